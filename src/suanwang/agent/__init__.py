"""The center agent (``suanwang agent``): runs at a center behind its firewall, connects out to
the control plane's API only, and drives the center's own executor (local processes or Slurm)
for the runs the control plane places there (docs/centers.md, "Agents").

* :mod:`.protocol`: what an agent and the control plane say to each other (``POST
  /v1/agents/{center}/sync``), shared by both sides;
* :mod:`.replicas`: the control plane's API replicas, one in use, and when a sync goes to
  another;
* :mod:`.state`: the agent's small state file (the control plane's refs → its local refs);
* :mod:`.loop`: the agent's loop: poll, sync, apply, and fence itself when out of contact.
"""
