"""Tabular: the functional checklist schema and (with the [train] extra) the tabular model."""
