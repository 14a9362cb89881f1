"""Scenarios: the built-in `china` network, the on-disk format, and the signal model."""
