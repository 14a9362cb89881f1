"""The control plane's API replicas as an agent reaches them: an HTTP client for each, the one
in use, and when a sync goes to another (docs/centers.md, "Agents").

The agent syncs with one replica at a time: the one that last answered. When a sync fails there
in any way but a refusal (no connection, no answer in time, the connection closed before the
answer, an error status, a 504 included, or an answer the agent cannot read), it goes to the next
replica in the same step (each at most once) and the agent stays with the first that answers.

Sending a sync again is safe: every sync carries the agent's whole state and the control plane
answers it from its records, so a repeat of one it recorded changes nothing (runs it told the
agent to start and the agent does not report are told again; a run's report overwrites the
same values; an ended run is recorded once, its later reports ignored). Sending it to another
replica while the one that failed may still have it is safe too: each copy sent carries a new
number, above every one before it, and the control plane applies a sync only if its number is
above all it applied for the center (:mod:`.protocol`). So a copy that a replica records late,
after a newer sync went through another, is refused and changes nothing: it can no longer leave
out the runs the agent started meanwhile and have them recorded ``lost`` (and placed again). A
control plane that does not check numbers speaks only protocol 1 and refuses this agent. (One
number for every copy would not do: the copy applied first would have the others refused, and
the answer of the step lost.)

A refusal (a wrong token, another center's, a protocol the replica does not speak) ends the
agent only when no replica answers the sync: a replica left on an older version during an
upgrade, or one given another deployment's database, refuses while the others answer; the
agent logs each refusal as an error and stays with a replica that answers.

A stale refusal the agent reads itself says its numbering is behind the control plane's record
(:meth:`~suanwang.agent.state.AgentState.next_seq`): :class:`Stale` carries the highest number
applied, for the agent to go on above it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from pydantic import ValidationError

from suanwang.agent.protocol import (
    APPLIED_HEADER,
    MAX_SEQ,
    PROTOCOL_HEADER,
    PROTOCOL_VERSION,
    SyncAnswer,
)

log = logging.getLogger("suanwang.agent")


class Refused(Exception):
    """The control plane refused this agent (a wrong token, another center's, an incompatible
    version): retrying cannot help."""


class Unsynced(Exception):
    """No replica answered the sync; the message says, for each one tried, why."""


class Stale(Exception):
    """A replica refused the sync as stale: the control plane applied one numbered ``applied``,
    not below it (see the module)."""

    def __init__(self, why: str, applied: int) -> None:
        super().__init__(why)
        self.applied = applied


class _Failed(Exception):
    """A sync one replica did not answer (it goes to the next)."""


def client_for(
    url: str, token: str, timeout_s: float = 10.0, connect_s: float = 3.0
) -> httpx.Client:
    """An HTTP client for the API replica at ``url`` with the agent's token. ``connect_s``:
    the most a connection may take (a step with every replica down waits at most that long
    for each)."""
    return httpx.Client(
        base_url=url.rstrip("/"),
        timeout=httpx.Timeout(timeout_s, connect=connect_s),
        headers={"Authorization": f"Bearer {token}", PROTOCOL_HEADER: str(PROTOCOL_VERSION)},
    )


class Replicas:
    """The API replicas of the control plane (a client each, at least one): ``client`` is the
    one in use, the first at the start."""

    def __init__(self, center_id: str, clients: Sequence[httpx.Client]) -> None:
        if not clients:
            raise ValueError("an agent needs the address of at least one API replica")
        self.center_id = center_id
        self.clients = list(clients)
        self.client = self.clients[0]

    def sync(self, body: dict[str, Any], seq: Callable[[], int]) -> SyncAnswer:
        """The answer to the sync ``body``, from the replica in use or the next ones (see the
        module), the one that answered in use from now on; ``seq`` gives the number of each
        copy sent. Raises :class:`Stale`; :class:`Refused` when none answers and one or more
        refused, else :class:`Unsynced` when none answers."""
        failed: list[str] = []
        refused: list[str] = []
        for client in self._in_turn():
            try:
                answer = self._sync_with(client, {**body, "seq": seq()})
            except _Failed as exc:
                failed.append(f"{client.base_url}: {exc}")
                continue
            except Refused as exc:  # the others may still answer (see the module)
                log.error("agent of center %s: %s: %s", self.center_id, client.base_url, exc)
                refused.append(f"{client.base_url}: {exc}")
                failed.append(f"{client.base_url}: refused")
                continue
            except Stale:
                self._use(client, failed)  # it answered
                raise
            self._use(client, failed)
            return answer
        if refused:
            raise Refused("; ".join(refused))
        raise Unsynced("; ".join(failed))

    def _use(self, client: httpx.Client, failed: list[str]) -> None:
        """``client`` answered: it is in use (the replicas that ``failed`` before it, why)."""
        if client is not self.client:
            log.warning(
                "agent of center %s moved to the control plane at %s (%s)",
                self.center_id, client.base_url, "; ".join(failed),
            )  # fmt: skip
            self.client = client

    def _in_turn(self) -> list[httpx.Client]:
        """Every replica once: the one in use, then those after it, in their order."""
        i = self.clients.index(self.client)
        return self.clients[i:] + self.clients[:i]

    def _sync_with(self, client: httpx.Client, body: dict[str, Any]) -> SyncAnswer:
        try:
            r = client.post(f"/v1/agents/{self.center_id}/sync", json=body)
        except httpx.HTTPError as exc:
            raise _Failed(f"{type(exc).__name__}: {exc}") from None
        detail = _detail(r)
        if r.status_code in (401, 403) or (r.status_code == 409 and "incompatible" in detail):
            raise Refused(f"the control plane refused this agent (HTTP {r.status_code}): {detail}")
        if r.status_code == 409 and APPLIED_HEADER in r.headers:
            raise Stale(
                f"{client.base_url}: HTTP 409: {detail}", _applied(r.headers[APPLIED_HEADER])
            )
        if r.status_code != 200:
            raise _Failed(f"HTTP {r.status_code}: {detail}")
        try:
            return SyncAnswer.model_validate(r.json())
        except (ValueError, ValidationError) as exc:
            raise _Failed(f"an answer this agent cannot read: {exc}") from None


def _applied(value: str) -> int:
    """The number of a stale refusal's :data:`APPLIED_HEADER`."""
    try:
        applied = int(value)
    except ValueError:
        applied = -1
    if not 0 <= applied < MAX_SEQ:
        raise _Failed(f"a stale refusal whose {APPLIED_HEADER} is not a sync number: {value!r}")
    return applied


def _detail(r: httpx.Response) -> str:
    try:
        detail = r.json().get("detail", "")
    except (ValueError, AttributeError):
        return r.text[:300]
    return detail if isinstance(detail, str) else json.dumps(detail)[:300]
