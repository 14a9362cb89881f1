"""The simulator: a digital twin that replays workloads on the placement engine."""
