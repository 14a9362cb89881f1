"""Platform configuration file: which scenario the platform serves and how each center is reached.

``suanwang serve --config platform.yaml``::

    scenario: china            # built-in name or a scenario directory (relative to this file)
    centers:
      - center_id: zhongwei
        executor:
          type: slurm          # a Slurm cluster reached through slurmrestd (JWT auth)
          url: http://127.0.0.1:6820
          token_file: zhongwei/token     # the platform's own JWT; re-read when it changes
          user: suanwang                 # the platform's own account (lists jobs and nodes)
          accounts:                      # tenant name -> its Unix account at this center
            acme: sw-acme
          account_tokens: zhongwei/tokens   # a JWT per account: tokens/<account>
          partition: suanwang
          output_dir: zhongwei/jobs      # where job output lands, readable from here
          lease_s: 60                    # optional (default: half of serve --lost-after)
          contain: true                  # jobs in bubblewrap: no network, own PIDs (optional)
      - center_id: beijing-yizhuang
        executor: {type: local, cpus: 256, cards: 64}
      - center_id: qingyang       # behind its own firewall: its agent connects out to us
        executor: {type: agent, lease_s: 30}   # grace_s: 10 (optional)

In live mode only the centers listed here receive jobs. A tenant not in a Slurm center's
``accounts`` has no jobs placed there, unless ``unsafe_shared_user: true`` lets such tenants'
jobs run as ``user`` itself, all of them under one account (dangerous: they can read each
other's files). ``contain`` runs each job's program in bubblewrap on the compute node (no
network, its own PID namespace, a read-only system, only its own directories writable): the
default is on when ``bwrap`` is installed on the platform's host (the testbed's case); a real
center states it (it needs ``bwrap`` on its compute nodes and unprivileged user namespaces).
Relative paths are relative to the file. Problems are reported with file,
line and field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from suanwang.executors.limits import Limits
from suanwang.scenarios.loader import Problem, ScenarioError, _compose, _field, _line_of

#: A Unix account name (what ``useradd`` accepts by default, at most 32 characters).
ACCOUNT_PATTERN = r"^[a-z_][a-z0-9_-]{0,31}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalExecutorConfig(_Strict):
    type: Literal["local"]
    cpus: int = Field(256, ge=1)
    cards: int = Field(64, ge=0)


_LIMITS = Limits()


class JobLimitsConfig(_Strict):
    """A contained job's limits at a Slurm center (:class:`suanwang.executors.limits.Limits`)."""

    cpu_time_s: int = Field(_LIMITS.cpu_time_s, ge=1)
    max_processes: int = Field(_LIMITS.max_processes, ge=1)
    max_file_gb: float = Field(_LIMITS.max_file_gb, gt=0)
    min_mem_gb: float = Field(_LIMITS.min_mem_gb, gt=0)


class SlurmExecutorConfig(_Strict):
    type: Literal["slurm"]
    url: str = Field(pattern=r"^https?://")
    token_file: str
    user: str = Field(min_length=1)
    partition: str | None = None
    output_dir: str
    api_version: str = "v0.0.38"
    timeout_s: float = Field(10.0, gt=0)
    lease_s: float | None = Field(None, gt=0)
    #: tenant name -> the Unix account its jobs run as at this center
    accounts: dict[str, Annotated[str, Field(pattern=ACCOUNT_PATTERN)]] = Field(
        default_factory=dict
    )
    #: a directory holding one JWT per account, named after it
    account_tokens: str | None = None
    unsafe_shared_user: bool = False
    #: run jobs in bubblewrap (no network, own PID namespace); None: if bwrap is installed here
    contain: bool | None = None
    #: directories every contained job may write too (a site's scratch; a channel between
    #: tenants: none by default)
    shared_dirs: list[str] = Field(default_factory=list)
    #: a contained job's rlimits (memory: its own mem_gb; docs/security.md "Resource limits")
    limits: JobLimitsConfig = Field(default_factory=lambda: JobLimitsConfig())

    @model_validator(mode="after")
    def _accounts_apart(self) -> SlurmExecutorConfig:
        if self.accounts and self.account_tokens is None:
            raise ValueError("accounts: needs account_tokens (a directory with a JWT per account)")
        owners: dict[str, str] = {}
        for tenant, account in self.accounts.items():
            if account in (self.user, "root"):
                raise ValueError(
                    f"accounts.{tenant}: {account!r} is the platform's own account or root; "
                    "a tenant's jobs need an account of their own"
                )
            if account in owners:
                raise ValueError(
                    f"accounts.{tenant}: {account!r} is also {owners[account]}'s account; "
                    "tenants sharing an account can read each other's files"
                )
            owners[account] = tenant
        return self


class AgentExecutorConfig(_Strict):
    """A center reached through its agent (``suanwang agent``, docs/centers.md "Agents"): the
    agent stops its runs itself after ``lease_s`` without contact; the control plane gives
    them up ``grace_s`` later at the earliest (``serve --lost-after`` must cover both).
    ``cpus``/``cards``: the slots the center offers, as a ``local`` executor's, for the engine
    to plan with before its agent has ever reported (else the scenario's figures)."""

    type: Literal["agent"]
    lease_s: float = Field(30.0, gt=0, le=86400)
    grace_s: float = Field(10.0, ge=0, le=86400)
    cpus: int | None = Field(None, ge=1)
    cards: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _slots_together(self) -> AgentExecutorConfig:
        if (self.cpus is None) != (self.cards is None):
            raise ValueError("cpus and cards: give both (the center's slots) or neither")
        return self


ExecutorEntry = LocalExecutorConfig | SlurmExecutorConfig

ExecutorConfig = Annotated[
    LocalExecutorConfig | SlurmExecutorConfig | AgentExecutorConfig, Field(discriminator="type")
]


class CenterConfig(_Strict):
    center_id: str
    executor: ExecutorConfig


class PlatformConfig(_Strict):
    scenario: str = "china"
    centers: list[CenterConfig] = Field(min_length=1)


class AgentConfig(_Strict):
    """An agent's file (``suanwang agent --config``): its center's own executor, the same
    entry as a platform file's ``local`` or ``slurm`` one, and where it keeps its state and
    local runs (relative to the file)."""

    executor: Annotated[LocalExecutorConfig | SlurmExecutorConfig, Field(discriminator="type")]
    work_dir: str = "agent-work"


_File = TypeVar("_File", PlatformConfig, AgentConfig)


def _validated(path: Path, model: type[_File]) -> tuple[_File, Any]:
    """The file read and checked as ``model`` (and its YAML node, for line numbers)."""
    file = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError([Problem(file, None, "", f"cannot read: {exc.strerror}")]) from None
    data, node = _compose(text, file)
    try:
        return model.model_validate(data), node
    except ValidationError as exc:
        raise ScenarioError(
            [
                Problem(file, _line_of(node, e["loc"]), _field(e["loc"]), e["msg"])
                for e in exc.errors()
            ]
        ) from None


def _absolute_paths(ex: ExecutorEntry, base: Path) -> ExecutorEntry:
    """A Slurm entry's paths made absolute (relative to ``base``)."""
    if not isinstance(ex, SlurmExecutorConfig):
        return ex

    def absolute(p: str) -> str:
        return str(base / p) if not Path(p).is_absolute() else p

    return ex.model_copy(
        update={
            "token_file": absolute(ex.token_file),
            "output_dir": absolute(ex.output_dir),
            "account_tokens": ex.account_tokens and absolute(ex.account_tokens),
            "shared_dirs": [absolute(d) for d in ex.shared_dirs],
        }
    )


def load_agent_config(path: Path) -> AgentConfig:
    """Read and check an agent's file; relative paths become absolute (relative to the file)."""
    cfg, _ = _validated(path, AgentConfig)
    base = path.resolve().parent
    work = Path(cfg.work_dir)
    return cfg.model_copy(
        update={
            "executor": _absolute_paths(cfg.executor, base),
            "work_dir": str(work if work.is_absolute() else base / work),
        }
    )


def load_platform_config(path: Path) -> PlatformConfig:
    """Read and check a platform file; relative paths become absolute (relative to the file)."""
    file = str(path)
    cfg, node = _validated(path, PlatformConfig)
    seen: dict[str, int] = {}
    problems = []
    for i, c in enumerate(cfg.centers):
        if c.center_id in seen:
            problems.append(
                Problem(
                    file,
                    _line_of(node, ["centers", i, "center_id"]),
                    f"centers[{i}].center_id",
                    f"{c.center_id!r} is listed twice (first as centers[{seen[c.center_id]}])",
                )
            )
        seen.setdefault(c.center_id, i)
    if problems:
        raise ScenarioError(problems)
    base = path.resolve().parent
    centers = []
    for c in cfg.centers:
        ex = c.executor
        if not isinstance(ex, AgentExecutorConfig):
            ex = _absolute_paths(ex, base)
        centers.append(c.model_copy(update={"executor": ex}))
    scenario = cfg.scenario
    if "/" in scenario or (base / scenario).is_dir():
        scenario = scenario if Path(scenario).is_absolute() else str(base / scenario)
    return cfg.model_copy(update={"scenario": scenario, "centers": centers})


def dump_platform_config(cfg: PlatformConfig) -> str:
    header = "# suanwang platform configuration (see `suanwang serve --config`).\n"
    return header + yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
