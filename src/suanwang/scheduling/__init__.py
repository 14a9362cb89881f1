"""Placement: online policies, the suanwang planner, and the offline bound."""
