"""Market data: candles, their sources, timeframes, resampling and indicators."""
