"""Data functions over the ORM (``session=`` by keyword; the caller commits)."""
