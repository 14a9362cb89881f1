"""Agent centers on the control plane's side (docs/centers.md, "Agents").

* :mod:`.tokens`: per-center agent tokens (made by ``suanwang agent token create``, stored
  hashed) and who a token speaks for;
* :mod:`.sync`: one sync of an agent: record what it reports, answer what it must do;
* :mod:`.executor`: :class:`AgentExecutor`, the :class:`~suanwang.executors.base.Executor`
  of an agent center, over the database (the services use it like any other executor).
"""
