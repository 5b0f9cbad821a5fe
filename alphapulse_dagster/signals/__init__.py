"""MTF signals: model heads, consensus, HTF alignment, entry refinement, storage, lifecycle."""
