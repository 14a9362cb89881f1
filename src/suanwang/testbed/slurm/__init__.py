"""Real, independent Slurm clusters on one machine: the local multi-center testbed.

Each cluster stands in for one center of a scenario: its own ``slurmctld``, one ``slurmd`` (one
node whose CPUs and GRES are declared, not detected: ``SlurmdParameters=config_overrides``) and
a ``slurmrestd`` speaking OpenAPI ``v0.0.38`` with JWT authentication
(``AuthAltTypes=auth/jwt``), all on free loopback ports, all state under ``DIR/<center>/``. One
``munged`` under ``DIR/munge/`` serves every cluster's internal authentication.

Each tenant of the testbed has a Unix account of its own (``sw-<tenant>``, module
``accounts``) and a JWT for it at every cluster (``DIR/<center>/tokens/<account>``); the platform
file maps tenants to them, so each tenant's jobs run as its own account.

Accelerators are GRES ``gpu:<model>`` (model ids with ``-`` → ``_``) backed by character
devices made with ``mknod`` (a copy of ``/dev/null``), so Slurm allocates and accounts cards
exactly as on a real GPU node while no real accelerator is needed. The platform's own JWT is
for the user who started the testbed (the JWT's ``sun`` claim); ``slurmrestd`` runs with
``SLURM_JWT=daemon`` so it passes the caller's token on to ``slurmctld`` (without it every
token is refused with "Rejecting thread config token").

A power cut (:func:`stop_cluster`) kills ``slurmctld``, ``slurmd``, ``slurmrestd`` and every job
step of that cluster with ``SIGKILL``; :func:`start_cluster` brings the cluster back with its
saved state (``StateSaveLocation``). Slurm does not requeue jobs on its own
(``JobRequeue=0``): after an outage the platform decides what runs again, so nothing runs twice.

Linux only (``/proc``); needs root (``slurmd`` launches jobs as another user; ``mknod``).

Modules: ``cluster`` (one cluster, its token and configuration files), ``daemons`` (running a
cluster and killing it), ``accounts`` (tenants' accounts and their tokens), ``testbed`` (the
clusters together: up, add tenants, stop, start, down).
"""

from suanwang.testbed.slurm.accounts import ACCOUNT_PREFIX, account_name, ensure_account
from suanwang.testbed.slurm.cluster import (
    API_VERSION,
    DAEMONS,
    MARKER_ENV,
    NODE_CARDS,
    NODE_CPUS,
    NODE_MEM_MB,
    PARTITION,
    TOKEN_LIFESPAN_S,
    Cluster,
    TestbedError,
    gres_conf,
    gres_type,
    job_user,
    mint_token,
    slurm_conf,
)
from suanwang.testbed.slurm.daemons import (
    cluster_processes,
    cluster_up,
    free_ports,
    kill_cluster,
    scontrol,
    start_cluster,
    stop_cluster,
)
from suanwang.testbed.slurm.testbed import (
    PLATFORM_FILE,
    PREFERRED_CENTERS,
    STATE_FILE,
    Testbed,
    add_tenants,
    choose_centers,
    down,
    start,
    stop,
    up,
)

__all__ = [
    "ACCOUNT_PREFIX",
    "API_VERSION",
    "DAEMONS",
    "MARKER_ENV",
    "NODE_CARDS",
    "NODE_CPUS",
    "NODE_MEM_MB",
    "PARTITION",
    "PLATFORM_FILE",
    "PREFERRED_CENTERS",
    "STATE_FILE",
    "TOKEN_LIFESPAN_S",
    "Cluster",
    "Testbed",
    "TestbedError",
    "account_name",
    "add_tenants",
    "choose_centers",
    "cluster_processes",
    "cluster_up",
    "down",
    "ensure_account",
    "free_ports",
    "gres_conf",
    "gres_type",
    "job_user",
    "kill_cluster",
    "mint_token",
    "scontrol",
    "slurm_conf",
    "start",
    "start_cluster",
    "stop",
    "stop_cluster",
    "up",
]
