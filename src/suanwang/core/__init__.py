"""Pure domain model: no I/O, no host dependencies."""
