"""The published instant patterns match exactly what the server accepts (both ways)."""

from __future__ import annotations

from datetime import UTC

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from suanwang.billing.offers import parse_time
from suanwang.core.instants import WHATIF_START, WHOLE_HOUR, matches
from suanwang.server.api.whatif import WhatIfBody


@settings(max_examples=400, deadline=None)
@given(st.from_regex(WHOLE_HOUR, fullmatch=True))
def test_every_whole_hour_text_is_a_whole_utc_hour(text: str) -> None:
    t = parse_time(text, what="start")
    assert (t.minute, t.second, t.microsecond) == (0, 0, 0)
    assert 1999 <= t.year <= 2100


@settings(max_examples=400, deadline=None)
@given(st.from_regex(WHATIF_START, fullmatch=True))
def test_every_whatif_start_text_is_accepted_and_in_range_in_utc(text: str) -> None:
    start = WhatIfBody.model_validate({"start": text}).start
    assert start.tzinfo is UTC and 2000 <= start.year <= 2100


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-23T08:00+08:00",
        "2026-11-23T00Z",
        "2026-11-23T08:00:00-05",
        "2028-02-29T00:00Z",
        "2000-02-29T23:00:00+00:00",
    ],
)
def test_whole_hours_published(text: str) -> None:
    assert matches(WHOLE_HOUR, text)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-23T08:30Z",  # not a whole hour
        "2026-11-23T08:00+05:30",  # a whole UTC hour, but not in the published form
        "2026-11-23T08:00",  # no offset
        "2026-02-29T00:00Z",  # no such day
        "2026-04-31T00:00Z",
        "2026-11-23T24:00Z",
        "1999-12-31T00:00Z",  # years 2000..2099
        "2026-11-23 08:00Z",
        "2026-11-23T08:00Z\n",
        " 2026-11-23T08:00Z",
        "2026-11-23T０8:00Z",  # full-width digit
    ],
)
def test_other_times_are_not(text: str) -> None:
    assert not matches(WHOLE_HOUR, text)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("2025-07-01T00:00Z", True),
        ("2025-07-01T08:30:15.123456+08:00", True),
        ("2025-07-01T00:00", True),  # read as UTC
        ("2000-01-01T00:00-01:00", True),
        ("2000-01-01T00:00+01:00", False),  # 1999 in UTC
        ("2100-12-31T23:00+05:00", True),
        ("2100-12-31T23:00-01:00", False),  # 2101 in UTC
        ("2100-02-29T00:00Z", False),  # 2100 is no leap year
        ("2000-02-29T00:00Z", True),
        ("1999-12-31T23:59Z", False),
        ("0001-01-01T00:00:00+14:00", False),  # was an OverflowError once
        ("2025-07-01", False),  # a time is part of it
        ("2025-07-01T00:00Z\n", False),
    ],
)
def test_whatif_start_pattern_and_server_agree(text: str, ok: bool) -> None:
    assert matches(WHATIF_START, text) is ok
    try:
        WhatIfBody.model_validate({"start": text})
    except ValidationError as exc:
        assert not ok
        assert [e["loc"] for e in exc.errors()] == [("start",)]
        assert "years 2000 to 2100" in str(exc)
    else:
        assert ok


def test_a_number_is_no_whatif_start() -> None:
    with pytest.raises(ValidationError, match="years 2000 to 2100"):
        WhatIfBody.model_validate({"start": 1_751_328_000})  # was read as a Unix time
