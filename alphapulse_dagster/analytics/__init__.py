"""Outcomes and strategy evaluation (SPEC §17): what each signal did after it fired, and
which entries and heads pay, with honest statistics."""
