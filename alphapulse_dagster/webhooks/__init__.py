"""TradingView webhooks: payload validation, ingestion and the outage spool."""
