"""The control plane's API replicas as an agent reaches them: an HTTP client for each, the one
in use, and when a sync goes to another (docs/centers.md, "Agents").

The agent syncs with one replica at a time: the one that last answered. When a sync fails in a
way that shows that replica has not recorded it and never will, the same request goes to the
next replica in the same step (each at most once) and the agent stays with the first that
answers. That is the case when no connection was made (a replica down: connection refused, or
no connection within the connect timeout), and when the replica answered anything but a
refusal or an answer the agent can read (it is done with the request: a 5xx rolled it back, an
answer lost after its commit is an ordinary repeat), except a 504 (a gateway that gave up
waiting: the replica behind it may still be at it).

Sending a sync again is safe: every sync carries the agent's whole state and the control plane
answers it from its records, so a repeat of one it recorded changes nothing (runs it told the
agent to start and the agent does not report are told again; a run's report overwrites the
same values; an ended run is recorded once, its later reports ignored). What is not safe is a
sync recorded *late*, after a newer one through another replica: it would leave out a run the
agent started meanwhile, which the control plane would then record ``lost`` (and place again).
So after a timeout or a connection closed before the answer (the replica may have the request
and still record it), the agent does not try another replica in that step; it tries the same
one again at the next.

Each copy sent carries a new number, above every one before it (:mod:`.protocol`). A stale
refusal the agent reads itself says its numbering is behind the control plane's record
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
    """A sync one replica did not answer. ``elsewhere``: that replica has not recorded it and
    never will, so it may go to another."""

    def __init__(self, why: str, elsewhere: bool) -> None:
        super().__init__(why)
        self.elsewhere = elsewhere


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
        copy sent. Raises :class:`Refused`, :class:`Stale`, and :class:`Unsynced` when none
        answers."""
        failed: list[str] = []
        for client in self._in_turn():
            try:
                answer = self._sync_with(client, {**body, "seq": seq()})
            except _Failed as exc:
                failed.append(f"{client.base_url}: {exc}")
                if exc.elsewhere:
                    continue
                if len(self.clients) > 1:
                    failed[-1] += " (it may still record the sync: not sent to another replica)"
                break
            except Stale:
                self._use(client, failed)  # it answered
                raise
            self._use(client, failed)
            return answer
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
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _Failed(f"{type(exc).__name__}: {exc}", elsewhere=True) from None
        except httpx.HTTPError as exc:
            raise _Failed(f"{type(exc).__name__}: {exc}", elsewhere=False) from None
        detail = _detail(r)
        if r.status_code in (401, 403) or (r.status_code == 409 and "incompatible" in detail):
            raise Refused(f"the control plane refused this agent (HTTP {r.status_code}): {detail}")
        if r.status_code == 409 and APPLIED_HEADER in r.headers:
            raise Stale(
                f"{client.base_url}: HTTP 409: {detail}", _applied(r.headers[APPLIED_HEADER])
            )
        if r.status_code != 200:
            raise _Failed(f"HTTP {r.status_code}: {detail}", elsewhere=r.status_code != 504)
        try:
            return SyncAnswer.model_validate(r.json())
        except (ValueError, ValidationError) as exc:
            raise _Failed(f"an answer this agent cannot read: {exc}", elsewhere=True) from None


def _applied(value: str) -> int:
    """The number of a stale refusal's :data:`APPLIED_HEADER`."""
    try:
        applied = int(value)
    except ValueError:
        applied = -1
    if not 0 <= applied < MAX_SEQ:
        raise _Failed(
            f"a stale refusal whose {APPLIED_HEADER} is not a sync number: {value!r}",
            elsewhere=True,
        )
    return applied


def _detail(r: httpx.Response) -> str:
    try:
        detail = r.json().get("detail", "")
    except (ValueError, AttributeError):
        return r.text[:300]
    return detail if isinstance(detail, str) else json.dumps(detail)[:300]
