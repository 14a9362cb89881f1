"""The ``suanwang`` command line (console script ``suanwang = suanwang.cli:main``).

An edge of the system, like the server: it calls into everything, nothing outside this package
imports it. ``main`` builds the root app (:mod:`suanwang.cli.main`); each module holds one
group of commands, :mod:`~suanwang.cli.client` the HTTP client of the client commands and
:mod:`~suanwang.cli.options` the options several commands share.
"""

from suanwang.cli.main import app, main

__all__ = ["app", "main"]
