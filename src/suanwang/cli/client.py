"""The HTTP client of the client commands (``submit``, ``jobs``, ``centers``, ``offers``, ...).

It finds the API in ``$SUANWANG_URL`` (default http://127.0.0.1:8000) and the caller's key in
``$SUANWANG_API_KEY``. Every failure (no key, no server, a refusal) ends the command with exit
code 2 and says what went wrong in a sentence on stderr (the API's own message); with
``--json``, stdout gets one JSON document instead: ``{"error": {"status": 409, "message":
"...", "detail": <the API's detail>}}`` (``status`` is null when no answer came).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer

from suanwang.cli.output import err, fail, print_json

if TYPE_CHECKING:
    import httpx

DEFAULT_URL = "http://127.0.0.1:8000"


def detail_of(r: httpx.Response) -> Any:
    """The ``detail`` of an error answer (FastAPI's shape), else its text."""
    try:
        doc = r.json()
    except ValueError:
        return r.text
    return doc.get("detail", doc) if isinstance(doc, dict) else doc


def explain(status: int, detail: Any) -> str:
    """A sentence for an error answer: the API's message, with the fields it names."""
    if isinstance(detail, dict) and "msg" in detail:
        message = str(detail["msg"])
    elif isinstance(detail, list):
        message = "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}"
            if isinstance(d, dict)
            else str(d)
            for d in detail
        )
    else:
        message = str(detail).strip() or f"HTTP {status}"
    if status >= 500:
        message = f"the server failed (HTTP {status}): {message}"
    return message


def _body(r: httpx.Response) -> Any:
    if r.headers.get("content-type", "").startswith("application/json"):
        return r.json()
    return r.text


@dataclass(frozen=True)
class Client:
    """Calls the API for one command; ``as_json``: its ``--json`` (errors as JSON too)."""

    as_json: bool = False

    @property
    def url(self) -> str:
        return os.environ.get("SUANWANG_URL", DEFAULT_URL).rstrip("/")

    def fail(
        self, message: str, status: int | None = None, detail: Any = None, **extra: Any
    ) -> typer.Exit:
        """End the command: ``message`` on stderr (and the candidates of an ambiguous job
        id), or with ``--json`` the error document on stdout (plus ``extra`` fields)."""
        if self.as_json:
            print_json({"error": {"status": status, "message": message, "detail": detail}} | extra)
            return typer.Exit(2)
        done = fail(message)
        candidates = detail.get("candidates", []) if isinstance(detail, dict) else []
        for c in candidates:
            err.print(f"  {c['id']}  {c['state']:<10} {c['name']}", highlight=False, markup=False)
        if isinstance(detail, dict) and detail.get("more"):
            err.print("  ...", highlight=False)
        return done

    def refused(self, r: httpx.Response, what: str = "") -> typer.Exit:
        """End the command for the error answer ``r`` (``what``: a prefix for the message)."""
        detail = detail_of(r)
        return self.fail(what + explain(r.status_code, detail), r.status_code, detail)

    def send(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        """The API's answer, whatever its status; no key, no server or a refused key end
        the command."""
        import httpx  # not at startup: only the client commands need it

        url, key = self.url, os.environ.get("SUANWANG_API_KEY", "")
        if not key:
            raise self.fail("set SUANWANG_API_KEY to your API key (see: suanwang tenants create)")
        try:
            r = httpx.request(
                method,
                url + path,
                headers={"Authorization": f"Bearer {key}", **(headers or {})},
                timeout=30,
                **kw,
            )
        except httpx.HTTPError as exc:
            raise self.fail(f"cannot reach the server at {url} ({exc})") from None
        if r.status_code == 401:
            message = f"the server at {url} refused the API key in SUANWANG_API_KEY"
            raise self.fail(message, 401, detail_of(r))
        return r

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any
    ) -> Any:
        """The answer's body (JSON or text); any error answer ends the command."""
        r = self.send(method, path, headers, **kw)
        if r.status_code >= 400:
            raise self.refused(r)
        return _body(r)
