"""The live control plane: HTTP API, database and (later) services. See docs/control-plane.md."""
