"""Tenants' Unix accounts on the testbed: one per tenant, the same on every cluster (the
clusters share this host's users), and a JWT for it at each cluster.

A tenant ``acme`` gets the system account ``sw-acme`` (``useradd --system``: no home, no login
shell, no password). Accounts stay on the host when the testbed goes down (another testbed on
the host may use them): ``userdel sw-acme`` removes one.
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
from pathlib import Path

from suanwang.testbed.slurm.cluster import Cluster, TestbedError, mint_token

#: Prefix of the testbed's tenant accounts.
ACCOUNT_PREFIX = "sw-"
_ACCOUNT = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


def account_name(tenant: str) -> str:
    """The testbed's account for ``tenant``: ``sw-<tenant>``, a valid Unix user name."""
    name = ACCOUNT_PREFIX + tenant
    if not _ACCOUNT.match(name):
        raise TestbedError(
            f"tenant {tenant!r}: the testbed's account {name!r} would not be a valid Unix user "
            "name (lowercase letters, digits, '-' and '_', at most 32 characters in all)"
        )
    return name


def ensure_account(account: str) -> None:
    """Create the system account ``account`` unless it exists."""
    try:
        pwd.getpwnam(account)
        return
    except KeyError:
        pass
    argv = ["useradd", "--system", "--user-group", "--no-create-home",
            "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", account]  # fmt: skip
    env = dict(os.environ, PATH=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin")
    r = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=60)
    if r.returncode not in (0, 9):  # 9: created meanwhile (another testbed)
        raise TestbedError(f"useradd {account}: {r.stderr.strip() or r.returncode}")


def write_token(c: Cluster, account: str) -> None:
    """The account's JWT for cluster ``c``: ``tokens/<account>``, mode 0600, signed with the
    cluster's key (what ``scontrol token username=<account>`` would give)."""
    key = (Path(c.dir) / "jwt.key").read_bytes()
    tokens = Path(c.tokens_dir)
    tokens.mkdir(mode=0o700, exist_ok=True)
    path = tokens / account
    path.write_text(mint_token(key, account) + "\n")
    path.chmod(0o600)


def reachable(root: Path) -> None:
    """Jobs run as tenants' accounts: every directory above ``root`` must let others pass."""
    for p in root.parents:
        if not p.stat().st_mode & 0o001:
            raise TestbedError(
                f"{p} is closed to other users (no o+x): jobs run as tenants' accounts and "
                f"could not reach their run directories under {root}; use another --dir or "
                f"`chmod o+x {p}`"
            )
