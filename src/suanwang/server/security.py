"""Security headers on every response (``SecurityHeaders``, an ASGI middleware of the app).

* every response: ``X-Content-Type-Options: nosniff`` (a browser never guesses a type, so a
  job's log or an invoice is never run as a page or script), ``Referrer-Policy: no-referrer``
  (no URL with a job id leaves the origin), ``X-Frame-Options: DENY``;
* HTML (the console, ``/docs``, ``/redoc``): a Content-Security-Policy allowing scripts,
  styles, images and connections from the origin only, no inline script anywhere, no plugin,
  no ``<base>``, forms to the origin, and ``frame-ancestors 'none'`` (the console cannot be
  framed to trick a click). The documentation viewers get inline *styles* (ReDoc writes its
  own ``<style>`` elements) and ReDoc its search worker from a ``blob:``; the console gets
  neither;
* anything else (JSON, text, CSV): ``default-src 'none'; frame-ancestors 'none'`` (nothing in
  it may load or be framed if it is ever opened as a page).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_HTML_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_DOCS_CSP = _HTML_CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'") + (
    "; worker-src 'self' blob:"
)
_OTHER_CSP = "default-src 'none'; frame-ancestors 'none'"
#: Pages that show a vendored documentation viewer.
DOCS_PATHS = frozenset({"/docs", "/redoc"})

_ALWAYS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


def csp_for(path: str, content_type: str) -> str:
    """The Content-Security-Policy of a response to ``path`` with ``content_type``."""
    if not content_type.startswith("text/html"):
        return _OTHER_CSP
    return _DOCS_CSP if path in DOCS_PATHS else _HTML_CSP


class SecurityHeaders:
    """Adds the headers above to every HTTP response (those a route set itself are kept)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                kind = next(
                    (v.decode("latin-1") for n, v in headers if n.lower() == b"content-type"), ""
                )
                extra = [*_ALWAYS, (b"content-security-policy", csp_for(path, kind).encode())]
                headers += [(n, v) for n, v in extra if n not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
