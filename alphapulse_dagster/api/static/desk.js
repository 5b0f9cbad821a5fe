/* AlphaPulse desk: plain JavaScript over the read API. No build step, nothing from a CDN.
 *
 * Views (hash-routed): #/health, #/signals, #/signal/<id>, #/strategies.
 * Auth: when the API answers 401 the page asks for the token once, keeps it in
 * sessionStorage (this tab only) and sends it as `Authorization: Bearer …` — never in a URL.
 * window.__desk exposes the live state (charts, last responses) to the browser tests.
 */
(() => {
  'use strict';
  const LWC = window.LightweightCharts;
  const TOKEN_KEY = 'alphapulse.apiToken';
  const PAGE_SIZE = 50;
  const POLL_MS = 5000;
  const TF_SECONDS = { '1m': 60, '5m': 300, '15m': 900, '30m': 1800, '1h': 3600, '2h': 7200,
    '4h': 14400, '6h': 21600, '12h': 43200, '1d': 86400, '1w': 604800 };
  const GROUPS = ['entry_strategy', 'entry_pattern', 'source', 'symbol', 'signal_timeframe',
    'htf_agreement', 'session', 'consensus_size'];
  const COLORS = { accent: '#4c8dff', green: '#1fbf75', red: '#ef4f5f', amber: '#f0b429',
    violet: '#a78bfa', text: '#d7dce6', muted: '#7d889c', line: '#232b3b' };

  const desk = { timers: [], charts: [], signals: { cursors: [null], filters: {} } };
  window.__desk = desk;
  const view = document.getElementById('view');

  // --- DOM and formatting helpers -------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const svgNS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(svgNS, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) {
        node.append(child instanceof Node ? child : document.createTextNode(String(child)));
      }
    }
    return node;
  }
  const dash = '—';
  const isNum = (x) => typeof x === 'number' && Number.isFinite(x);
  const fmtTime = (iso) => (iso ? iso.replace('T', ' ').replace(/(\.\d+)?(Z|\+00:00)$/, '') : dash);
  const fmtShortTime = (iso) => (iso ? fmtTime(iso).slice(0, 16) : dash);
  const fmtPrice = (x) => (isNum(x) ? (Math.abs(x) >= 100 ? x.toFixed(2) : x.toFixed(5)) : dash);
  const fmtR = (x) => (isNum(x) ? (x >= 0 ? '+' : '') + x.toFixed(2) + 'R' : dash);
  const fmtPct = (x, scale = 100) => (isNum(x) ? (x * scale).toFixed(2) + '%' : dash);
  const fmtFixed = (x, d) => (isNum(x) ? x.toFixed(d) : dash);
  const epoch = (iso) => Math.floor(Date.parse(iso) / 1000);
  const toIso = (seconds) => new Date(seconds * 1000).toISOString();
  const badge = (text, kind) => el('span', { class: 'badge b-' + (kind || text) }, text);
  const signalLink = (id, text) => el('a', { href: '#/signal/' + encodeURIComponent(id) }, text || id);
  const scoreClass = (s) => (!isNum(s) ? '' : s >= 85 ? 'good' : s >= 70 ? 'warn' : 'bad');

  function panel(title, ...children) {
    return el('section', { class: 'panel' }, el('h2', {}, title), ...children);
  }
  function table(headers, rows, attrs) {
    return el('div', { class: 'table-wrap' }, el('table', attrs || {},
      el('thead', {}, el('tr', {}, headers.map((h) =>
        el('th', { class: NUMERIC_HEADERS.has(h) ? 'num' : null }, h)))),
      el('tbody', {}, rows)));
  }
  const NUMERIC_HEADERS = new Set(['N', 'Entry', 'Stop', 'Exit', 'MFE', 'MAE', 'Weight', 'Conf',
    'Health', 'Count', 'Signals', 'Fill', 'Win', 'Expectancy', '95 % CI', 'PF', 'Max DD', 'Impr. bps']);
  const emptyRow = (span, text) => el('tr', {}, el('td', { colspan: span, class: 'empty' }, text));

  // --- auth and the API ------------------------------------------------------------------

  let asking = null;
  function askToken(refused) {
    if (asking) return asking;
    const dialog = document.getElementById('token-dialog');
    const input = document.getElementById('token-input');
    document.getElementById('token-error').hidden = !refused;
    input.value = '';
    asking = new Promise((resolve) => {
      const form = document.getElementById('token-form');
      const submit = (event) => {
        event.preventDefault();
        if (!input.value) return;
        sessionStorage.setItem(TOKEN_KEY, input.value);
        form.removeEventListener('submit', submit);
        dialog.close();
        asking = null;
        document.getElementById('token-button').hidden = false;
        resolve();
      };
      form.addEventListener('submit', submit);
      dialog.addEventListener('cancel', (event) => event.preventDefault());
      dialog.showModal();
    });
    return asking;
  }

  async function api(path) {
    for (;;) {
      const token = sessionStorage.getItem(TOKEN_KEY);
      const headers = { Accept: 'application/json' };
      if (token) headers.Authorization = 'Bearer ' + token;
      let response;
      try {
        response = await fetch(path, { headers });
      } catch (err) {
        setLive(false, 'offline');
        throw err;
      }
      if (response.status === 401) {
        if (token) sessionStorage.removeItem(TOKEN_KEY);
        await askToken(Boolean(token));
        continue;
      }
      if (!response.ok) {
        const error = new Error(path + ' → HTTP ' + response.status);
        error.status = response.status;
        throw error;
      }
      setLive(true);
      return response.json();
    }
  }

  function setLive(ok, text) {
    const live = document.getElementById('live');
    live.className = 'live ' + (ok ? 'ok' : 'bad');
    document.getElementById('live-text').textContent =
      text || 'updated ' + new Date().toISOString().slice(11, 19) + ' UTC';
  }

  // --- router ------------------------------------------------------------------------------

  function cleanup() {
    desk.timers.forEach(clearInterval);
    desk.timers = [];
    desk.charts.forEach((chart) => chart.remove());
    desk.charts = [];
  }

  async function route() {
    cleanup();
    const [path] = (location.hash || '#/health').split('?');
    const [, name, ...rest] = path.split('/');
    document.querySelectorAll('.tabs a').forEach((a) => {
      const active = a.dataset.view === name || (name === 'signal' && a.dataset.view === 'signals');
      a.classList.toggle('active', active);
    });
    view.replaceChildren(el('p', { class: 'note' }, 'Loading…'));
    desk.view = name;
    try {
      if (name === 'signals') await renderSignals();
      else if (name === 'signal') await renderSignal(decodeURIComponent(rest.join('/')));
      else if (name === 'strategies') await renderStrategies();
      else await renderHealth();
      desk.rendered = name;
    } catch (err) {
      view.replaceChildren(el('div', { class: 'notice error' }, 'Could not load: ' + err.message));
    }
  }

  function chartBase(container, height) {
    const chart = LWC.createChart(container, {
      height,
      autoSize: true,
      // attributionLogo stays on: TradingView's licence asks for the credit (an inline link)
      layout: { background: { color: 'transparent' }, textColor: COLORS.muted, fontSize: 11 },
      grid: { vertLines: { color: '#161c28' }, horzLines: { color: '#161c28' } },
      rightPriceScale: { borderColor: COLORS.line },
      timeScale: { borderColor: COLORS.line, timeVisible: true, secondsVisible: false },
      crosshair: { mode: LWC.CrosshairMode.Normal },
    });
    desk.charts.push(chart);
    return chart;
  }

  // --- Health ------------------------------------------------------------------------------

  function kpi(key, label, text, value, hint, cls) {
    return el('div', { class: 'kpi', 'data-kpi': key, 'data-value': JSON.stringify(value) },
      el('div', { class: 'label' }, label),
      el('div', { class: 'value ' + (cls || '') }, text),
      hint ? el('div', { class: 'hint' }, hint) : null);
  }

  async function renderHealth() {
    const [health, history, gaps] = await Promise.all([
      api('/health'), api('/health/history'), api('/health/gaps')]);
    desk.health = health;
    const kinds = {};
    for (const row of gaps.breakdown) kinds[row.gap_type] = row.kind;
    const kpis = el('div', { class: 'kpis' },
      kpi('health_score', 'Health score', fmtFixed(health.health_score, 2), health.health_score,
        '100 = every signal complete', scoreClass(health.health_score)),
      kpi('signal_coverage', 'Signal coverage', fmtPct(health.signal_coverage),
        health.signal_coverage, 'confirmed signals with a SIGNAL_CREATED'),
      kpi('data_confidence', 'Data confidence', fmtPct(health.data_confidence),
        health.data_confidence, 'mean field confidence'),
      kpi('signals', 'Signals', String(health.signals), health.signals, 'in the report window'),
      kpi('total_gaps', 'Open gaps', String(health.total_gaps), health.total_gaps),
      kpi('manual_intervention', 'Manual attention', String(health.manual_intervention),
        health.manual_intervention, 'gaps no tier can fill',
        health.manual_intervention ? 'warn' : 'good'));

    const chartBox = el('div', { class: 'chart small', id: 'health-chart' });
    const breakdown = Object.entries(health.gap_breakdown || {}).filter(([, n]) => n > 0)
      .sort((a, b) => b[1] - a[1]);
    const most = Math.max(1, ...breakdown.map(([, n]) => n));
    const byKind = {};
    for (const [type, n] of breakdown) {
      const kind = kinds[type] || 'unknown';
      byKind[kind] = (byKind[kind] || 0) + n;
    }
    const gapRows = breakdown.length ? breakdown.map(([type, n]) => el('tr', { 'data-gap': type },
      el('td', { class: 'mono' }, type),
      el('td', {}, badge(kinds[type] || 'unknown', kinds[type])),
      el('td', { class: 'num' }, String(n)),
      el('td', { style: 'width:40%' }, el('div', { class: 'meter', style: 'width:100%' },
        el('i', { style: `width:${(100 * n) / most}%;background:${kinds[type] === 'expected' ? COLORS.muted : COLORS.amber}` })))))
      : [emptyRow(4, 'No open gaps')];
    const attention = gaps.attention.length ? gaps.attention.map((row) => el('tr', { 'data-signal-id': row.signal_id },
      el('td', {}, signalLink(row.signal_id)),
      el('td', {}, row.symbol),
      el('td', {}, badge(row.status)),
      el('td', {}, row.gap_types.map((g) => el('span', { class: 'gap-chip' }, g))),
      el('td', { class: 'mono' }, fmtShortTime(row.detected_at))))
      : [emptyRow(5, 'Nothing needs a person: every open gap can be filled by a sync tier.')];

    view.replaceChildren(
      el('div', { class: 'view-head' }, el('h1', {}, 'Signal health'),
        el('span', { class: 'sub' }, health.measured_at
          ? 'latest report ' + fmtTime(health.measured_at) + ' UTC' : 'no sync has run yet')),
      kpis,
      el('div', { class: 'grid cols-2' },
        panel('Score and coverage over time', chartBox, el('div', { class: 'legend' },
          el('span', {}, el('i', { style: 'background:' + COLORS.accent }), 'health score'),
          el('span', {}, el('i', { style: 'background:' + COLORS.green }), 'signal coverage %'),
          el('span', {}, el('i', { style: 'background:' + COLORS.violet }), 'data confidence %'))),
        panel('Open gaps by type and kind',
          el('div', { class: 'legend', style: 'margin:0 0 8px' }, Object.entries(byKind).map(([k, n]) =>
            el('span', { 'data-kind': k }, badge(k), ' ', String(n)))),
          table(['Gap type', 'Kind', 'Count', ''], gapRows, { id: 'gap-table' }))),
      el('div', { style: 'height:14px' }),
      panel('Signals needing manual attention', table(['Signal', 'Symbol', 'Status', 'Gaps no tier can fill', 'Detected'], attention, { id: 'attention-table' })));

    const points = dedupeByTime(history.points.map((p) => ({ ...p, time: epoch(p.measured_at) })));
    if (!points.length) {
      chartBox.replaceChildren(el('div', { class: 'no-data' }, 'No health reports yet: run a sync (alphapulse sync).'));
      return;
    }
    const chart = chartBase(chartBox, 240);
    const line = (color, pick) => {
      const series = chart.addSeries(LWC.LineSeries, { color, lineWidth: 2, priceLineVisible: false,
        pointMarkersVisible: points.length < 40 });
      series.setData(points.filter((p) => isNum(pick(p))).map((p) => ({ time: p.time, value: pick(p) })));
      return series;
    };
    line(COLORS.accent, (p) => p.health_score);
    line(COLORS.green, (p) => (isNum(p.signal_coverage) ? p.signal_coverage * 100 : null));
    line(COLORS.violet, (p) => (isNum(p.data_confidence) ? p.data_confidence * 100 : null));
    chart.timeScale().fitContent();
  }

  function dedupeByTime(points) {
    const out = [];
    for (const p of points) {
      if (out.length && out[out.length - 1].time >= p.time) out[out.length - 1] = p;
      else out.push(p);
    }
    return out;
  }

  // --- All Signals ------------------------------------------------------------------------

  function signalQuery(cursor) {
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    for (const [key, value] of Object.entries(desk.signals.filters)) if (value) params.set(key, value);
    if (cursor) params.set('cursor', cursor);
    return '/signals?' + params.toString();
  }

  function healthCell(score) {
    if (!isNum(score)) return dash;
    const color = score >= 85 ? COLORS.green : score >= 70 ? COLORS.amber : COLORS.red;
    return el('span', { class: 'health-cell' }, el('span', { class: 'meter' },
      el('i', { style: `width:${score}%;background:${color}` })), score.toFixed(0));
  }

  function signalRow(item) {
    const targets = item.targets || [];
    return el('tr', { 'data-signal-id': item.signal_id, 'data-updated': item.updated_at || '' },
      el('td', { class: 'mono' }, fmtShortTime(item.signal_time || item.confirmed_at)),
      el('td', {}, signalLink(item.signal_id, item.trade_id || item.signal_id.slice(0, 8)),
        el('span', { class: 'src src-' + item.source, title: item.source }, item.source === 'tradingview' ? 'TV' : 'AP')),
      el('td', { class: 'mono', 'data-col': 'symbol' }, item.symbol),
      el('td', {}, item.direction ? badge(item.direction) : dash, el('span', { class: 'note mono' }, ' ' + (item.timeframe || ''))),
      el('td', { 'data-col': 'status' }, badge(item.status), item.status_reason ? el('span', { class: 'note reason', title: item.status_reason }, ' ' + item.status_reason) : null),
      el('td', { class: 'num' }, fmtPrice(item.entry_price)),
      el('td', { class: 'num' }, fmtPrice(item.stop_loss)),
      el('td', { class: 'mono', title: targets.map(fmtPrice).join(', ') }, targets.length ? fmtPrice(targets[0]) + (targets.length > 1 ? ` +${targets.length - 1}` : '') : dash),
      el('td', { class: 'num' }, isNum(item.mfe) || isNum(item.mae) ? fmtR(item.mfe) + ' / ' + fmtR(item.mae).replace('+', '') : dash),
      el('td', { class: 'num' }, fmtPrice(item.exit_price)),
      el('td', { class: 'num' }, healthCell(item.health_score)),
      el('td', { 'data-col': 'gaps', title: (item.gaps || []).join(', ') }, (item.gaps || []).length
        ? el('span', { class: 'gap-chip' }, item.gaps.length === 1 ? item.gaps[0] : item.gaps.length + ' gaps')
        : el('span', { class: 'note' }, 'none')),
      el('td', { class: 'mono' }, item.entry_strategy || dash));
  }

  const SIGNAL_HEADERS = ['Signal time', 'Signal', 'Symbol', 'Side · TF', 'Status',
    'Entry', 'Stop', 'Targets', 'MFE / MAE', 'Exit', 'Health', 'Open gaps', 'Strategy'];

  async function renderSignals() {
    const state = desk.signals;
    const f = state.filters;
    const select = (name, options) => el('select', { name, onchange: applyFilters },
      el('option', { value: '' }, 'any'), options.map((o) => el('option', { value: o, selected: f[name] === o }, o)));
    const input = (name, placeholder, type, list) => el('input', { name, placeholder, type: type || 'text',
      value: f[name] || '', list, onchange: applyFilters, size: 12 });
    const strategies = el('datalist', { id: 'strategy-list' });
    api('/metrics/mtf').then((m) => strategies.replaceChildren(
      ...Object.keys(m.strategy_distribution || {}).map((s) => el('option', { value: s })))).catch(() => {});
    const form = el('form', { class: 'filters', id: 'signal-filters', onsubmit: (e) => { e.preventDefault(); applyFilters(); } },
      el('label', {}, 'Status', select('status', ['PENDING', 'CONFIRMED', 'CLOSED', 'CANCELLED'])),
      el('label', {}, 'Source', select('source', ['tradingview', 'alphapulse'])),
      el('label', {}, 'Symbol', input('symbol', 'e.g. BTCUSD')),
      el('label', {}, 'Direction', select('direction', ['LONG', 'SHORT'])),
      el('label', {}, 'Strategy', input('strategy', 'entry strategy', 'text', 'strategy-list')),
      el('label', {}, 'Since (UTC)', input('since', '', 'datetime-local')),
      el('label', {}, 'Until (UTC)', input('until', '', 'datetime-local')),
      el('button', { type: 'button', class: 'ghost', onclick: () => { state.filters = {}; state.cursors = [null]; route(); } }, 'Clear'),
      strategies);
    const tbody = el('tbody', { id: 'signals-body' });
    const pageInfo = el('span', { id: 'page-info' });
    const prev = el('button', { type: 'button', id: 'page-prev', onclick: () => { state.cursors.pop(); load(); } }, '← Newer');
    const next = el('button', { type: 'button', id: 'page-next', onclick: () => { state.cursors.push(state.next); load(); } }, 'Older →');
    view.replaceChildren(
      el('div', { class: 'view-head' }, el('h1', {}, 'All Signals'),
        el('span', { class: 'sub' }, 'newest first · refreshes every ' + POLL_MS / 1000 + ' s')),
      form,
      el('section', { class: 'panel' }, el('div', { class: 'table-wrap' }, el('table', { id: 'signals-table' },
        el('thead', {}, el('tr', {}, SIGNAL_HEADERS.map((h) => el('th', { class: ['Entry', 'Stop', 'MFE / MAE', 'Exit', 'Health'].includes(h) ? 'num' : null }, h)))),
        tbody)),
      el('div', { class: 'pager' }, pageInfo, prev, next)));

    function applyFilters() {
      const data = new FormData(form);
      state.filters = {};
      for (const [key, value] of data.entries()) {
        let v = String(value).trim();
        if (!v) continue;
        if (key === 'symbol') v = v.toUpperCase();
        if (key === 'since' || key === 'until') v = v.length === 16 ? v + ':00Z' : v + 'Z';
        state.filters[key] = v;
      }
      state.cursors = [null];
      load();
    }
    // datetime-local shows the stored value without the Z
    for (const key of ['since', 'until']) if (f[key]) form.elements[key].value = f[key].replace(/(:00)?Z$/, '');

    let shown = new Map();
    async function load(polling) {
      const cursor = state.cursors[state.cursors.length - 1];
      const page = await api(signalQuery(cursor));
      if (desk.view !== 'signals') return;
      state.page = page;
      state.next = page.next_cursor;
      const rows = page.items.map(signalRow);
      if (polling) {
        rows.forEach((row) => {
          const before = shown.get(row.dataset.signalId);
          if (before !== row.dataset.updated) row.classList.add('flash');
        });
      }
      shown = new Map(page.items.map((i) => [i.signal_id, i.updated_at || '']));
      tbody.replaceChildren(...(rows.length ? rows : [emptyRow(SIGNAL_HEADERS.length, 'No signal matches these filters.')]));
      prev.disabled = state.cursors.length <= 1;
      next.disabled = !page.next_cursor;
      pageInfo.textContent = `page ${state.cursors.length} · ${page.items.length} rows`;
      tbody.dataset.loaded = String(Date.now());
    }
    await load(false);
    desk.timers.push(setInterval(() => load(true).catch(() => setLive(false, 'poll failed')), POLL_MS));
  }

  // --- One signal -------------------------------------------------------------------------

  function payloadSummary(payload) {
    const skip = new Set(['secret', 'event', 'trade_id', 'symbol', 'time']);
    return Object.entries(payload || {}).filter(([k]) => !skip.has(k))
      .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`).join('  ');
  }

  function realisedR(s) {
    if (!isNum(s.entry_price) || !isNum(s.stop_loss) || !isNum(s.exit_price) || s.entry_price === s.stop_loss) return null;
    const sign = s.direction === 'SHORT' ? -1 : 1;
    return (sign * (s.exit_price - s.entry_price)) / Math.abs(s.entry_price - s.stop_loss);
  }

  async function renderSignal(id) {
    const s = await api('/signals/' + encodeURIComponent(id));
    desk.signal = s;
    const tf = s.timeframe && TF_SECONDS[s.timeframe] ? s.timeframe : null;
    const chartBox = el('div', { class: 'chart', id: 'signal-chart' });
    const timeline = el('ol', { class: 'timeline', id: 'timeline' }, s.events.map((e) => {
      const cls = [e.inferred ? 'inferred' : 'explicit', e.superseded ? 'superseded' : ''].join(' ');
      return el('li', { class: cls, 'data-event-id': e.event_id, 'data-event-type': e.event_type },
        el('span', { class: 'ev-time' }, fmtTime(e.event_time)),
        el('span', { class: 'ev-type' }, e.event_type),
        e.inferred ? badge('inferred') : badge('explicit'),
        e.superseded ? el('span', { class: 'badge b-flag', title: 'a later ENTRY re-opened the signal, or an explicit event outranked this inferred expiry' }, ' superseded') : null,
        el('div', { class: 'ev-body' }, `#${e.event_id} · ${e.source} · received ${fmtTime(e.received_at)}`),
        el('div', { class: 'ev-body' }, payloadSummary(e.payload)));
    }));
    const provenance = Object.entries(s.field_provenance || {}).sort().map(([field, p]) => el('tr', { 'data-field': field },
      el('td', { class: 'mono' }, field),
      el('td', { class: 'mono wrap' }, formatValue(s[field])),
      el('td', {}, badge(String(p.tier), 'explicit')),
      el('td', { class: 'num' }, fmtFixed(p.confidence, 2)),
      el('td', { class: 'note' }, String(p.source ?? dash))));
    const audit = s.audit.map((a) => el('tr', {},
      el('td', { class: 'mono' }, fmtShortTime(a.action_timestamp)),
      el('td', { class: 'mono' }, a.field),
      el('td', { class: 'mono wrap' }, formatValue(a.old_value) + ' → ' + formatValue(a.new_value)),
      el('td', {}, String(a.tier)),
      el('td', { class: 'num' }, fmtFixed(a.confidence, 2)),
      el('td', { class: 'note', style: 'white-space:normal' }, a.reason)));
    const gapRows = (s.gap_details || []).map((g) => el('tr', { 'data-gap': g.gap_type },
      el('td', { class: 'mono' }, g.gap_type), el('td', {}, badge(g.kind)),
      el('td', { class: 'num' }, fmtFixed(g.weight, 0)), el('td', {}, g.fillable ? 'a sync tier' : 'a person'),
      el('td', { class: 'mono' }, fmtShortTime(g.detected_at))));
    const r = realisedR(s);
    const outcome = s.outcome;
    const outcomeRows = [
      ['Status', s.status + (s.status_reason ? ' · ' + s.status_reason : '')],
      ['Exit', s.exit_price != null ? fmtPrice(s.exit_price) + ' · ' + (s.exit_reason || '') : dash],
      ['Realised (reported)', fmtR(r)],
      ['MFE / MAE', fmtR(s.mfe) + ' / ' + fmtR(s.mae)],
      ['Highest / lowest', fmtPrice(s.highest) + ' / ' + fmtPrice(s.lowest)],
      ['Target hit', s.target_hit ? 'TP' + s.target_hit : 'none'],
    ];
    if (outcome && typeof outcome === 'object') {
      // the candle-derived outcome (SPEC §17): the actual entry, then each counterfactual
      outcomeRows.push(['From candles', `${outcome.status || dash} · ${fmtR(outcome.r_multiple)}` +
        (outcome.exit_reason ? ' · ' + outcome.exit_reason : '') + (outcome.ambiguous ? ' · ambiguous bar' : '')]);
      outcomeRows.push(['MFE / MAE (candles)', fmtR(outcome.mfe_r) + ' / ' + fmtR(outcome.mae_r).replace('+', '')]);
      for (const [mode, cf] of Object.entries(outcome.counterfactuals || {})) {
        outcomeRows.push(['If entered ' + mode.toLowerCase().replace(/_/g, ' '),
          `${cf.status || dash} · ${fmtR(cf.r_multiple)}` + (isNum(cf.entry_price) ? ' @ ' + fmtPrice(cf.entry_price) : '')]);
      }
    }
    const facts = [
      ['Source', s.source], ['Timeframe', s.timeframe || dash], ['Signal time', fmtShortTime(s.signal_time)],
      ['Confirmed', fmtShortTime(s.confirmed_at)], ['Entry', fmtPrice(s.entry_price)], ['Stop', fmtPrice(s.stop_loss)],
      ['Targets', (s.targets || []).map(fmtPrice).join(' / ') || dash], ['Health', isNum(s.health_score) ? s.health_score.toFixed(0) : dash],
    ];
    view.replaceChildren(
      el('div', { class: 'sig-head' },
        el('a', { href: '#/signals' }, '← All Signals'),
        el('h1', { class: 'mono' }, s.symbol), s.direction ? badge(s.direction) : null, badge(s.status),
        el('span', { class: 'note mono' }, s.signal_id),
        el('div', { class: 'facts' }, facts.map(([k, v]) => el('span', {}, k + ' ', el('b', {}, v))))),
      el('div', { class: 'grid cols-2' },
        panel(`Chart · ${s.symbol} ${s.timeframe || ''}`, chartBox, el('div', { class: 'legend' },
          el('span', {}, el('i', { style: 'background:' + COLORS.accent }), 'entry'),
          el('span', {}, el('i', { style: 'background:' + COLORS.red }), 'stop'),
          el('span', {}, el('i', { style: 'background:' + COLORS.green }), 'targets'),
          el('span', {}, el('i', { style: 'background:' + COLORS.text }), 'exit'))),
        panel('Lifecycle timeline (event time)', el('p', { class: 'note', style: 'margin:0 0 8px' },
          'solid = reported by the source · dashed = inferred by the sync · struck = superseded'), timeline)),
      el('div', { style: 'height:14px' }),
      el('div', { class: 'grid cols-2e' },
        panel('Outcome', table(['', ''], outcomeRows.map(([k, v]) => el('tr', {}, el('td', { class: 'note' }, k), el('td', { class: 'mono' }, v))))),
        panel('Open gaps', table(['Gap', 'Kind', 'Weight', 'Filled by', 'Detected'], gapRows.length ? gapRows : [emptyRow(5, 'No open gaps')], { id: 'signal-gaps' }))),
      el('div', { style: 'height:14px' }),
      el('div', { class: 'grid cols-2e' },
        panel('Field provenance', table(['Field', 'Value', 'Tier', 'Conf', 'Source'], provenance.length ? provenance : [emptyRow(5, 'none')], { id: 'provenance' })),
        panel('Audit trail', table(['When', 'Field', 'Change', 'Tier', 'Conf', 'Reason'], audit.length ? audit : [emptyRow(6, 'The sync has changed nothing on this signal.')], { id: 'audit' }))));
    await drawSignalChart(s, tf, chartBox);
  }

  function formatValue(v) {
    if (v === null || v === undefined) return dash;
    if (typeof v === 'number') return Math.abs(v) >= 100 ? v.toFixed(2) : String(+v.toFixed(5));
    if (Array.isArray(v)) return '[' + v.map(formatValue).join(', ') + ']';
    if (typeof v === 'object') return JSON.stringify(v);
    return String(v).replace(/T(\d\d:\d\d):00(\.0+)?(Z|\+00:00)$/, ' $1');
  }

  async function drawSignalChart(s, tf, box) {
    desk.signalChart = null;
    const anchor = s.signal_time || s.created_at || s.confirmed_at || (s.events[0] && s.events[0].event_time);
    if (!tf || !anchor) {
      box.replaceChildren(el('div', { class: 'no-data', id: 'no-candles' }, `No candles: this signal has no ${tf ? 'time' : 'known timeframe'}.`));
      return;
    }
    const step = TF_SECONDS[tf];
    const lastEvent = s.events.length ? s.events[s.events.length - 1].event_time : anchor;
    const end = Math.max(epoch(s.closed_at || s.cancelled_at || lastEvent), epoch(anchor));
    const since = epoch(anchor) - 60 * step;
    const until = end + 30 * step;
    const params = new URLSearchParams({ symbol: s.symbol, timeframe: tf, since: toIso(since), until: toIso(until), limit: '2000' });
    const series = await api('/candles?' + params.toString());
    if (!series.candles.length) {
      box.replaceChildren(el('div', { class: 'no-data', id: 'no-candles' },
        `No candles for ${s.symbol} ${tf} between ${toIso(since).slice(0, 16)} and ${toIso(until).slice(0, 16)} in the candles table. ` +
        'Import them with alphapulse import-candles, or let the candles asset run.'));
      return;
    }
    const chart = chartBase(box, 420);
    const candles = chart.addSeries(LWC.CandlestickSeries, {
      upColor: COLORS.green, downColor: COLORS.red, borderVisible: false,
      wickUpColor: COLORS.green, wickDownColor: COLORS.red, priceLineVisible: false,
      priceFormat: { type: 'price', precision: Math.abs(series.candles[0].close) >= 100 ? 2 : 5,
        minMove: Math.abs(series.candles[0].close) >= 100 ? 0.01 : 0.00001 },
    });
    candles.setData(series.candles);
    const lines = [];
    const addLine = (title, price, color, style) => {
      if (!isNum(price)) return;
      candles.createPriceLine({ price, color, lineWidth: 1, lineStyle: style, axisLabelVisible: true, title });
      lines.push({ title, price });
    };
    addLine('Entry', s.entry_price, COLORS.accent, LWC.LineStyle.Solid);
    addLine('Stop', s.stop_loss, COLORS.red, LWC.LineStyle.Solid);
    (s.targets || []).forEach((t, i) => addLine('TP' + (i + 1), t, COLORS.green, LWC.LineStyle.Dashed));
    addLine('Exit', s.exit_price, COLORS.text, LWC.LineStyle.Dotted);
    const first = series.candles[0].time;
    const last = series.candles[series.candles.length - 1].time;
    const barOf = (iso) => {
      const t = epoch(iso);
      const bar = t - ((t - first) % step + step) % step;
      return bar >= first && bar <= last ? bar : null;
    };
    const markers = [];
    const long = s.direction !== 'SHORT';
    const mark = (iso, price, text, color, shape, position) => {
      const time = iso ? barOf(iso) : null;
      if (time === null) return;
      const m = { time, color, shape, text };
      if (isNum(price)) Object.assign(m, { position: 'atPriceMiddle', price });
      else m.position = position;
      markers.push(m);
    };
    mark(s.created_at || s.signal_time, null, 'SIGNAL', COLORS.amber, 'circle', long ? 'belowBar' : 'aboveBar');
    mark(s.confirmed_at, s.entry_price, 'FILL ' + fmtPrice(s.entry_price), COLORS.accent, long ? 'arrowUp' : 'arrowDown');
    mark(s.closed_at, s.exit_price, 'EXIT ' + (s.exit_reason || ''), COLORS.text, 'square');
    if (s.cancelled_at) mark(s.cancelled_at, null, s.status_reason || 'CANCELLED', COLORS.muted, 'square', 'aboveBar');
    markers.sort((a, b) => a.time - b.time);
    LWC.createSeriesMarkers(candles, markers);
    const focus = epoch(anchor);
    chart.timeScale().setVisibleRange({ from: Math.max(first, focus - 40 * step), to: Math.min(last, end + 20 * step) });
    desk.signalChart = { chart, series: candles, lines, markers, candles: series.candles.length };
  }

  // --- Strategy evaluation ----------------------------------------------------------------

  const groupName = (key) => (key === null || key === undefined ? '(none)' : String(key));

  function forestPlot(groups) {
    const rowH = 26, left = 170, right = 150, width = 760;
    const height = groups.length * rowH + 30;
    const values = groups.flatMap((g) => [g.expectancy_r, ...(g.expectancy_ci || [])]).filter(isNum);
    const lo = Math.min(-0.5, ...values), hi = Math.max(0.5, ...values);
    const x = (v) => left + ((v - lo) / (hi - lo)) * (width - left - right);
    const plot = svg('svg', { viewBox: `0 0 ${width} ${height}`, width: '100%', id: 'forest' },
      svg('line', { x1: x(0), x2: x(0), y1: 0, y2: height - 20, stroke: COLORS.muted, 'stroke-dasharray': '3 3' }),
      svg('text', { x: x(0) - 4, y: height - 6 }, '0R'),
      svg('text', { x: left, y: height - 6 }, fmtR(lo)), svg('text', { x: width - right - 30, y: height - 6 }, fmtR(hi)));
    groups.forEach((g, i) => {
      const y = i * rowH + 14;
      const flagged = Boolean(g.flag);
      const color = flagged ? COLORS.muted : g.expectancy_r >= 0 ? COLORS.green : COLORS.red;
      plot.append(svg('text', { x: 4, y: y + 4 }, groupName(g.key).slice(0, 24)));
      const [a, b] = g.expectancy_ci || [];
      if (isNum(a) && isNum(b)) plot.append(svg('line', { x1: x(a), x2: x(b), y1: y, y2: y, stroke: color, 'stroke-width': 2 }));
      if (isNum(g.expectancy_r)) {
        plot.append(svg('circle', { cx: x(g.expectancy_r), cy: y, r: 5, fill: flagged ? 'none' : color, stroke: color, 'stroke-width': 2 }));
      }
      plot.append(svg('text', { x: width - right + 8, y: y + 4 }, `N ${g.n}${flagged ? ' · ' + g.flag : ''}`));
    });
    return plot;
  }

  function scatter(trades) {
    const width = 620, height = 300, pad = 36;
    const xs = trades.map((t) => t.mae_r).filter(isNum), ys = trades.map((t) => t.mfe_r).filter(isNum);
    const xMax = Math.max(1, ...xs), yMax = Math.max(1, ...ys);
    const x = (v) => pad + (v / xMax) * (width - 2 * pad);
    const y = (v) => height - pad - (v / yMax) * (height - 2 * pad);
    const plot = svg('svg', { viewBox: `0 0 ${width} ${height}`, width: '100%', id: 'mfe-mae' },
      svg('line', { class: 'axis', x1: pad, x2: width - pad, y1: height - pad, y2: height - pad }),
      svg('line', { class: 'axis', x1: pad, x2: pad, y1: pad / 2, y2: height - pad }),
      svg('text', { x: width / 2 - 30, y: height - 8 }, 'MAE (R) →'),
      svg('text', { x: 4, y: pad / 2 }, '↑ MFE (R)'),
      svg('text', { x: width - pad - 20, y: height - pad + 14 }, xMax.toFixed(1)),
      svg('text', { x: 6, y: pad + 4 }, yMax.toFixed(1)),
      svg('line', { x1: x(1), x2: x(1), y1: pad / 2, y2: height - pad, stroke: COLORS.red, 'stroke-dasharray': '2 4', 'stroke-opacity': 0.6 }),
      svg('text', { x: x(1) + 4, y: pad / 2 + 8 }, 'stop (1R)'));
    for (const t of trades) {
      if (!isNum(t.mae_r) || !isNum(t.mfe_r)) continue;
      plot.append(svg('circle', { cx: x(t.mae_r), cy: y(t.mfe_r), r: 4, fill: t.r >= 0 ? COLORS.green : COLORS.red, 'fill-opacity': 0.75 },
        svg('title', {}, `${t.signal_id}: ${fmtR(t.r)} (MFE ${fmtR(t.mfe_r)}, MAE ${fmtR(t.mae_r)})`)));
    }
    return plot;
  }

  function equityCurve(trades) {
    const width = 620, height = 300, pad = 36;
    let sum = 0;
    const curve = [0, ...trades.map((t) => (sum += t.r))];
    const lo = Math.min(0, ...curve), hi = Math.max(0.5, ...curve);
    const x = (i) => pad + (i / Math.max(1, curve.length - 1)) * (width - 2 * pad);
    const y = (v) => height - pad - ((v - lo) / (hi - lo)) * (height - 2 * pad);
    let peak = -Infinity, maxDd = 0;
    for (const v of curve) { peak = Math.max(peak, v); maxDd = Math.max(maxDd, peak - v); }
    return svg('svg', { viewBox: `0 0 ${width} ${height}`, width: '100%', id: 'equity' },
      svg('line', { class: 'axis', x1: pad, x2: width - pad, y1: y(0), y2: y(0) }),
      svg('text', { x: 4, y: y(0) + 4 }, '0R'),
      svg('text', { x: 4, y: y(hi) + 4 }, fmtR(hi)),
      svg('text', { x: width / 2 - 30, y: height - 8 }, 'trade # →'),
      svg('polyline', { points: curve.map((v, i) => `${x(i)},${y(v)}`).join(' '), fill: 'none', stroke: COLORS.accent, 'stroke-width': 2 }),
      svg('text', { x: width - pad - 150, y: pad / 2 + 4 }, `total ${fmtR(sum)} · max DD ${maxDd.toFixed(2)}R`));
  }

  async function renderStrategies() {
    const group = desk.strategyGroup || 'entry_strategy';
    const [evaluation, mtf, trades] = await Promise.all([
      api('/analytics/strategies?group_by=' + encodeURIComponent(group)).catch((e) => (e.status === 404 ? null : Promise.reject(e))),
      api('/metrics/mtf'),
      api('/analytics/trades')]);
    desk.evaluation = evaluation;
    const sections = [el('div', { class: 'view-head' }, el('h1', {}, 'Strategy evaluation'),
      el('span', { class: 'sub' }, 'expectancy in R with 95 % intervals; flagged groups are not findings'))];
    if (evaluation) {
      const switcher = el('select', { id: 'group-by', onchange: (e) => { desk.strategyGroup = e.target.value; route(); } },
        GROUPS.map((g) => el('option', { value: g, selected: g === group }, g)));
      const groups = evaluation.groups || [];
      const rows = groups.map((g) => el('tr', { 'data-group': g.key, class: g.flag ? 'flagged' : null, style: g.flag ? 'color:' + COLORS.muted : null },
        el('td', { class: 'mono' }, groupName(g.key)), el('td', { class: 'num' }, String(g.n)),
        el('td', { class: 'num' }, fmtPct(g.fill_rate)), el('td', { class: 'num' }, fmtPct(g.win_rate)),
        el('td', { class: 'num' }, fmtR(g.expectancy_r)),
        el('td', { class: 'num' }, (g.expectancy_ci || []).map((v) => fmtFixed(v, 2)).join(' … ') || dash),
        el('td', { class: 'num' }, fmtFixed(g.profit_factor, 2)), el('td', { class: 'num' }, fmtFixed(g.max_drawdown_r, 2)),
        el('td', { class: 'num' }, fmtR(g.mean_mfe_r)), el('td', { class: 'num' }, fmtR(g.mean_mae_r)),
        el('td', { class: 'num' }, fmtFixed(g.entry_improvement_bps, 1)),
        el('td', {}, g.flag ? el('span', { class: 'badge b-flag' }, g.flag) : el('span', { class: 'good' }, 'finding'))));
      const p = evaluation.paired || {};
      sections.push(el('div', { class: 'grid cols-2' },
        el('section', { class: 'panel' }, el('h2', {}, 'Expectancy by ', switcher), groups.length ? forestPlot(groups) : el('p', { class: 'empty' }, 'No outcomes yet.')),
        el('section', { class: 'panel', id: 'paired' }, el('h2', {}, 'Paired: refined entry vs market'),
          el('div', { class: 'kpis' },
            kpi('paired_n', 'Pairs', String(p.n ?? dash), p.n ?? null),
            kpi('delta_r', 'Δ R (refined − market)', fmtR(p.delta_r), p.delta_r ?? null,
              '95 % CI ' + (p.delta_ci || []).map((v) => fmtFixed(v, 2)).join(' … '),
              p.delta_ci && p.delta_ci[0] > 0 ? 'good' : p.delta_ci && p.delta_ci[1] < 0 ? 'bad' : ''),
            kpi('missed_r', 'Missed by unfilled limits', fmtR(p.missed_r), p.missed_r ?? null))),
      ));
      sections.push(el('div', { style: 'height:14px' }), panel('Groups', table(['Group', 'N', 'Fill', 'Win', 'Expectancy', '95 % CI', 'PF', 'Max DD', 'MFE', 'MAE', 'Impr. bps', ''], rows, { id: 'groups' })));
    } else {
      sections.push(el('div', { class: 'notice', id: 'no-outcomes' },
        'Strategy evaluation by group appears once the outcomes assets (signal_outcomes, strategy_performance) serve GET /analytics/strategies. Until then: the MTF metrics below.'));
    }
    const dist = Object.entries(mtf.strategy_distribution || {}).sort((a, b) => b[1] - a[1]);
    const most = Math.max(1, ...dist.map(([, n]) => n));
    sections.push(el('div', { style: 'height:14px' }), el('section', { class: 'panel', id: 'mtf-metrics' }, el('h2', {}, 'MTF metrics'),
      el('div', { class: 'kpis' },
        kpi('total_signals', 'MTF signals', String(mtf.total_signals), mtf.total_signals),
        kpi('refinement_success_rate', 'Refinement success', fmtPct(mtf.refinement_success_rate, 1), mtf.refinement_success_rate),
        kpi('fill_rate', 'Fill rate', fmtPct(mtf.fill_rate, 1), mtf.fill_rate),
        kpi('mean_entry_improvement_bps', 'Entry improvement', fmtFixed(mtf.mean_entry_improvement_bps, 1) + ' bps', mtf.mean_entry_improvement_bps),
        kpi('avg_risk_reward_ratio', 'Avg R:R', fmtFixed(mtf.avg_risk_reward_ratio, 2), mtf.avg_risk_reward_ratio),
        kpi('avg_entry_confidence', 'Avg entry confidence', fmtFixed(mtf.avg_entry_confidence, 2), mtf.avg_entry_confidence),
        kpi('signals_last_24h', 'Last 24 h', String(mtf.signals_last_24h), mtf.signals_last_24h)),
      table(['Entry strategy', 'Signals', ''], dist.length ? dist.map(([k, n]) => el('tr', { 'data-strategy': k },
        el('td', { class: 'mono' }, k), el('td', { class: 'num' }, String(n)),
        el('td', { style: 'width:55%' }, el('div', { class: 'meter', style: 'width:100%' }, el('i', { style: `width:${(100 * n) / most}%;background:${COLORS.accent}` })))))
        : [emptyRow(3, 'No MTF signals yet: run mtf_signal_job.')])));
    const closed = trades.trades;
    const label = trades.source === 'signal_outcomes' ? 'actual entries, from candles (signal_outcomes)' : 'exits reported by the indicator (registry)';
    sections.push(el('div', { style: 'height:14px' }), el('div', { class: 'grid cols-2e' },
      panel('MFE / MAE per trade', el('p', { class: 'note', style: 'margin:0 0 6px' }, `${closed.length} closed trades · ${label} · green = won`),
        closed.length ? scatter(closed) : el('p', { class: 'empty' }, 'No closed trades yet.')),
      panel('Equity curve (R)', el('p', { class: 'note', style: 'margin:0 0 6px' }, '1R risked per trade, in closing order'),
        closed.length ? equityCurve(closed) : el('p', { class: 'empty' }, 'No closed trades yet.'))));
    view.replaceChildren(...sections);
  }

  document.getElementById('token-button').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    askToken(false).then(route);
  });
  if (sessionStorage.getItem(TOKEN_KEY)) document.getElementById('token-button').hidden = false;
  window.addEventListener('hashchange', route);
  route();
})();
