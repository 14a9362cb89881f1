"""The usage convention: parsing ``$SUANWANG_USAGE_FILE`` (pure) and reading it from disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from suanwang.executors.base import (
    USAGE_FILE_MAX_BYTES,
    USAGE_MAX_PROBLEMS,
    USAGE_TOKENS_LIMIT,
    RunUsage,
    parse_usage,
    read_usage_file,
)


def lines(*items: str) -> str:
    return "".join(f"{item}\n" for item in items)


# ---------------------------------------------------------------------- parse_usage (pure)


def test_increments_are_summed() -> None:
    text = lines('{"tokens": 512}', '{"tokens": 0}', '{ "tokens" : 88 }')
    assert parse_usage(text) == RunUsage(600)


def test_empty_and_blank_text_is_no_usage() -> None:
    assert parse_usage("") == RunUsage(0, ())
    assert parse_usage("\n \n\t\n") == RunUsage()


def test_a_line_that_is_not_json_is_a_problem_and_the_others_count() -> None:
    usage = parse_usage(lines('{"tokens": 5}', "tokens=7", '{"tokens": 6}'))
    assert usage.tokens == 11
    (problem,) = usage.problems
    assert problem.startswith("usage line 2: not JSON: ")


def test_negative_tokens_are_refused_naming_the_line_and_value() -> None:
    usage = parse_usage(lines('{"tokens": 1}', '{"tokens": 2}', '{"tokens": -5}'))
    assert usage == RunUsage(
        3, ('usage line 3: "tokens" must be a whole number >= 0 and below 10**12, not -5',)
    )


def test_tokens_must_be_a_json_integer() -> None:
    bad = ["512.0", "1.5", '"512"', "true", "false", "null", "[512]", '{"n": 1}', "1e3"]
    usage = parse_usage(lines(*(f'{{"tokens": {v}}}' for v in bad), '{"tokens": 4}'))
    assert usage.tokens == 4
    assert len(usage.problems) == len(bad)
    for number, (value, problem) in enumerate(zip(bad, usage.problems, strict=True), start=1):
        assert problem.startswith(f'usage line {number}: "tokens" must be a whole number'), problem
        assert problem.endswith(f"not {json.dumps(json.loads(value))}"), problem


def test_a_line_must_be_an_object_with_tokens() -> None:
    usage = parse_usage(lines("512", "[1, 2]", '"tokens"', "{}", '{"token": 5}'))
    assert usage.tokens == 0
    assert usage.problems == (
        'usage line 1: expected a JSON object like {"tokens": 512}, not 512',
        'usage line 2: expected a JSON object like {"tokens": 512}, not [1, 2]',
        'usage line 3: expected a JSON object like {"tokens": 512}, not "tokens"',
        'usage line 4: no "tokens"',
        'usage line 5: no "tokens" (has "token")',
    )


def test_unknown_keys_are_a_problem_but_the_tokens_count() -> None:
    usage = parse_usage(lines('{"tokens": 10, "model": "qwen"}', '{"tokens": 1}'))
    assert usage == RunUsage(
        11, ('usage line 1: unknown key(s) "model" ignored (its "tokens" counted)',)
    )


def test_huge_values_and_totals_are_capped() -> None:
    top = USAGE_TOKENS_LIMIT - 1
    usage = parse_usage(lines(f'{{"tokens": {USAGE_TOKENS_LIMIT}}}', f'{{"tokens": {top}}}'))
    assert usage.tokens == top
    assert usage.problems == (
        f'usage line 1: "tokens" must be a whole number >= 0 and below 10**12, '
        f"not {USAGE_TOKENS_LIMIT}",
    )
    usage = parse_usage(lines(f'{{"tokens": {top}}}', '{"tokens": 1}', '{"tokens": 0}'))
    assert usage == RunUsage(
        top, ("usage line 2: the run's total would reach 10**12: these 1 are not counted",)
    )
    digits = "9" * 5000  # more digits than Python converts: still only a problem
    usage = parse_usage(lines(f'{{"tokens": {digits}}}', '{"tokens": 2}'))
    assert usage.tokens == 2 and usage.problems[0].startswith("usage line 1: not JSON: ")
    usage = parse_usage("[" * 100_000 + "\n")  # nesting deeper than the parser goes
    assert usage.tokens == 0 and usage.problems[0].startswith("usage line 1: not JSON")


def test_a_cut_off_last_line_is_ignored_without_a_problem() -> None:
    assert parse_usage('{"tokens": 300}\n{"tokens": 30') == RunUsage(300)
    assert parse_usage('{"tokens": 300}\n{"tok') == RunUsage(300)


def test_a_complete_last_line_without_newline_counts() -> None:
    assert parse_usage('{"tokens": 300}\n{"tokens": 30}') == RunUsage(330)
    usage = parse_usage('{"tokens": 300}\n{"tokens": -1}')
    assert usage.tokens == 300 and usage.problems[0].startswith("usage line 2: ")


def test_values_are_shortened_in_problems() -> None:
    usage = parse_usage(lines(json.dumps({"tokens": "x" * 1000})))
    (problem,) = usage.problems
    assert len(problem) < 120 and problem.endswith('not "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...')


def test_problems_are_listed_up_to_a_limit() -> None:
    usage = parse_usage(lines(*["oops"] * (USAGE_MAX_PROBLEMS + 5), '{"tokens": 1}'))
    assert usage.tokens == 1
    assert len(usage.problems) == USAGE_MAX_PROBLEMS + 1
    assert usage.problems[-1] == "usage: 5 more problem(s) not listed"


@given(st.lists(st.integers(0, 10**9), max_size=50), st.sampled_from(["\n", "\r\n"]))
def test_good_lines_sum_exactly(increments: list[int], newline: str) -> None:
    text = "".join(json.dumps({"tokens": n}) + newline for n in increments)
    assert parse_usage(text) == RunUsage(sum(increments))


@given(st.text(max_size=300))
def test_any_text_parses_without_raising(text: str) -> None:
    usage = parse_usage(text)
    assert 0 <= usage.tokens < USAGE_TOKENS_LIMIT
    assert len(usage.problems) <= USAGE_MAX_PROBLEMS + 1
    assert all(p.startswith("usage") for p in usage.problems)


# ---------------------------------------------------------------------- read_usage_file


def test_no_file_is_no_usage(tmp_path: Path) -> None:
    assert read_usage_file(tmp_path / "usage.jsonl") == RunUsage()


def test_a_file_is_read_and_parsed(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    path.write_bytes(b'{"tokens": 7}\n\xff\xfe\n{"tokens": 8}\n')  # not UTF-8: a problem line
    usage = read_usage_file(path)
    assert usage.tokens == 15
    assert [p.split(":")[0] for p in usage.problems] == ["usage line 2"]


def test_only_the_first_mebibyte_is_read(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    line = b'{"tokens": 1}\n'
    count = USAGE_FILE_MAX_BYTES // len(line) + 100
    path.write_bytes(line * count)
    usage = read_usage_file(path)
    assert usage.tokens == USAGE_FILE_MAX_BYTES // len(line)  # whole lines within the limit
    assert usage.problems == (
        f"usage file {path} is larger than {USAGE_FILE_MAX_BYTES} bytes: only its lines "
        f"within the first {USAGE_FILE_MAX_BYTES} bytes were read",
    )


def test_only_a_regular_file_is_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text('{"tokens": 99}\n')
    link = tmp_path / "link.jsonl"
    link.symlink_to(secret)
    assert read_usage_file(link) == RunUsage(
        problems=(f"cannot read the usage file {link}: it is a symbolic link",)
    )
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)  # opening it for reading must not block
    assert read_usage_file(fifo) == RunUsage(
        problems=(f"cannot read the usage file {fifo}: not a regular file",)
    )
    folder = tmp_path / "dir.jsonl"
    folder.mkdir()
    assert read_usage_file(folder) == RunUsage(
        problems=(f"cannot read the usage file {folder}: not a regular file",)
    )
