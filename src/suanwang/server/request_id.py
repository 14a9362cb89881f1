"""``X-Request-ID``: every HTTP request has an id, the client's or a new one, sent back on the
response and written with every audit entry the request makes (``request.state.request_id``).

A client's id is kept if it is 1 to 64 characters of letters, digits and ``._:-`` (what a
proxy or tracing header carries); anything else is replaced by a new id (the response says
which one the server used), never refused.
"""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
_RAW = HEADER.lower().encode("latin-1")
_VALID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestId:
    """Stamp each HTTP request with its id (``scope["state"]["request_id"]``) and answer with
    it in ``X-Request-ID``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers", []) if k == _RAW), None)
        ok = given is not None and _VALID.fullmatch(given)
        request_id = given.decode("ascii") if ok and given is not None else new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        stamp = (_RAW, request_id.encode("ascii"))

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != _RAW]
                message = {**message, "headers": [*headers, stamp]}
            await send(message)

        await self.app(scope, receive, stamped)
