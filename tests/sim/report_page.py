"""Reading a written report in the report tests: its outline and the figures it plots
(importable by the tests of this folder, like ``a100.py``)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

PLOTLY_MARKER = "* plotly.js v"  # banner at the top of the plotly.js bundle


class Outline(HTMLParser):
    """A page's headings, title, table cells, scripts, external resources, plot divs and
    charset."""

    def __init__(self) -> None:
        super().__init__()
        self.h2: list[str] = []
        self.title = ""
        self.cells: list[str] = []
        self.script_src: list[str] = []
        self.external: list[str] = []
        self.div_ids: list[str] = []
        self.charset = ""
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("h2", "title", "td"):
            self._in = tag
            if tag == "td":
                self.cells.append("")
        if tag == "script" and "src" in a:
            self.script_src.append(a["src"] or "")
        if tag in ("link", "img", "iframe") and re.match(
            r"https?:", a.get("href") or a.get("src") or ""
        ):
            self.external.append(tag)
        if tag == "div" and a.get("class") == "plotly-graph-div":
            self.div_ids.append(a.get("id") or "")
        if tag == "meta" and a.get("charset"):
            self.charset = (a["charset"] or "").lower()

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "h2":
            self.h2.append(data)
        elif self._in == "title":
            self.title += data
        elif self._in == "td":
            self.cells[-1] += data


def outline(page: str) -> Outline:
    parser = Outline()
    parser.feed(page)
    parser.close()
    return parser


def figure_json(page: str, div_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The data and layout the page hands to ``Plotly.newPlot`` for the div ``div_id``."""
    call = re.search(r'Plotly\.newPlot\(\s*"' + re.escape(div_id) + r'",\s*', page)
    assert call is not None, div_id
    decoder = json.JSONDecoder()
    data, end = decoder.raw_decode(page, call.end())
    comma = re.compile(r"\s*,\s*").match(page, end)
    assert comma is not None
    layout, _ = decoder.raw_decode(page, comma.end())
    return data, layout
