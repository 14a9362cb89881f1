"""The console's files: one HTML page, its JavaScript modules, CSS and the province map.

Everything in ``static/`` is package data served as it is (no build step, nothing loaded from
another host); the routes that serve it are in :mod:`suanwang.server.api.console`.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

#: The directory served at ``/static``.
STATIC = Path(str(resources.files(__name__).joinpath("static")))


@functools.cache
def index_html(version: str) -> str:
    """The console's page, naming ``version`` in its footer."""
    return (STATIC / "index.html").read_text("utf-8").replace("{{version}}", version)
