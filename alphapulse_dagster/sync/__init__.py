"""The event log and the hybrid sync: lifecycle fold, projection, gaps, reconciliation, health."""
