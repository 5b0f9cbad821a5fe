#!/usr/bin/env bash
# Re-vendor the desk's front-end libraries from the npm registry (only when changing a pin;
# nothing here runs at install or run time). Versions: alphapulse_dagster/api/static/vendor/VERSIONS.md
set -euo pipefail
cd "$(dirname "$0")/.."
LWC=${LWC:-5.2.1}
SWAGGER=${SWAGGER:-5.35.0}
VENDOR=alphapulse_dagster/api/static/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "lightweight-charts@$LWC" "swagger-ui-dist@$SWAGGER" >/dev/null)
for tgz in "$work"/*.tgz; do
  mkdir -p "${tgz%.tgz}" && tar xzf "$tgz" -C "${tgz%.tgz}"
  sha512sum "$tgz"
done
l="$work/lightweight-charts-$LWC/package" s="$work/swagger-ui-dist-$SWAGGER/package"
mkdir -p "$VENDOR/lightweight-charts" "$VENDOR/swagger-ui"
cp "$l/dist/lightweight-charts.standalone.production.js" "$l/LICENSE" "$VENDOR/lightweight-charts/"
cp "$s/swagger-ui-bundle.js" "$s/swagger-ui-bundle.js.LICENSE.txt" "$s/swagger-ui.css" \
   "$s/LICENSE" "$s/NOTICE" "$s/favicon-32x32.png" "$VENDOR/swagger-ui/"
sed -i 's|/\*# sourceMappingURL=.*\*/||' "$VENDOR/swagger-ui/swagger-ui.css"
echo "vendored lightweight-charts@$LWC and swagger-ui-dist@$SWAGGER; update VERSIONS.md"
