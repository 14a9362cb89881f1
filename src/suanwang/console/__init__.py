"""The operations console and app marketplace (issue 6): pages served at ``/``.

One HTML page with vanilla JavaScript and CSS (``static/``, shipped as package data; no build
step, no CDN) over the JSON API. The API key is kept in the browser's sessionStorage and sent
as ``Authorization: Bearer`` on every request. :func:`mount` adds the page, the static files
and two small JSON routes the pages need (``/v1/me``, ``/v1/network/map``).
"""

from suanwang.console.routes import mount

__all__ = ["mount"]
