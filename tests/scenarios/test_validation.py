"""Malformed scenario directories: every problem names its file, line and field.

Variants are made from the tiny fixture by text replacement in ``tmp_path``; the expected line
is where the replacement landed, found from the text itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from suanwang.core.scenario import DeferralRule
from suanwang.scenarios.loader import Problem, ScenarioError, load_scenario, validate_dir

CSV_HEADER = "time,price_cny_per_kwh,carbon_g_per_kwh,green_fraction"


def make_variant(tiny_dir: Path, tmp_path: Path, old: str = "", new: str = "") -> Path:
    dst = tmp_path / "scenario"
    shutil.copytree(tiny_dir, dst)
    if old:
        yaml_path = dst / "scenario.yaml"
        text = yaml_path.read_text("utf-8")
        assert text.count(old) == 1, f"fixture text {old!r} must occur exactly once"
        yaml_path.write_text(text.replace(old, new), "utf-8")
    return dst


def line_of(path: Path, needle: str) -> int:
    """1-based line of the only line containing ``needle``."""
    lines = [i for i, ln in enumerate(path.read_text("utf-8").splitlines(), 1) if needle in ln]
    assert len(lines) == 1, (needle, lines)
    return lines[0]


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]


def assert_fails_to_load(path: Path, problems: list[Problem]) -> None:
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    assert exc.value.problems == problems
    for p in problems:
        assert str(p) in str(exc.value)


def test_unknown_province_in_center(tiny_dir: Path, tmp_path: Path) -> None:
    d = make_variant(
        tiny_dir,
        tmp_path,
        'province: "coastal"\n    city: "harbour"',
        'province: "atlantis"\n    city: "harbour"',
    )
    problems = validate_dir(d)
    p = only(problems)
    assert Path(p.file) == d / "scenario.yaml"
    assert p.line == line_of(d / "scenario.yaml", '"atlantis"')
    assert p.field == "centers[1].province"
    assert "atlantis" in p.message
    assert_fails_to_load(d, problems)


def test_negative_pue(tiny_dir: Path, tmp_path: Path) -> None:
    d = make_variant(tiny_dir, tmp_path, "pue: 1.1\n", "pue: -1.1\n")
    p = only(validate_dir(d))
    assert Path(p.file).name == "scenario.yaml"
    assert p.line == line_of(d / "scenario.yaml", "pue: -1.1")
    assert p.field == "centers[2].pue"
    assert str(p).startswith(f"{p.file}:{p.line}: centers[2].pue: ")


def test_extra_unknown_key_in_center(tiny_dir: Path, tmp_path: Path) -> None:
    d = make_variant(tiny_dir, tmp_path, "pue: 1.25\n", "pue: 1.25\n    colour: blue\n")
    p = only(validate_dir(d))
    assert p.line == line_of(d / "scenario.yaml", "colour: blue")
    assert p.field == "centers[1].colour"


def test_extra_unknown_top_level_key(tiny_dir: Path, tmp_path: Path) -> None:
    d = make_variant(
        tiny_dir, tmp_path, "timezone: Asia/Shanghai\n", "timezone: Asia/Shanghai\nflavour: x\n"
    )
    p = only(validate_dir(d))
    assert p.line == line_of(d / "scenario.yaml", "flavour: x")
    assert p.field == "flavour"


def test_bad_yaml_syntax(tiny_dir: Path, tmp_path: Path) -> None:
    d = make_variant(tiny_dir, tmp_path, "egress_gbps: 200\n", "egress_gbps: 200: oops\n")
    p = only(validate_dir(d))
    assert Path(p.file).name == "scenario.yaml"
    assert p.line == line_of(d / "scenario.yaml", "200: oops")
    assert "YAML" in p.message


def test_missing_field_points_at_its_center(tiny_dir: Path, tmp_path: Path) -> None:
    d = make_variant(tiny_dir, tmp_path, "    egress_gbps: 200\n", "")
    p = only(validate_dir(d))
    assert p.field == "centers[1].egress_gbps"
    assert p.line == line_of(d / "scenario.yaml", "id: coast-hpc")


def test_many_problems_reported_together(tiny_dir: Path, tmp_path: Path) -> None:
    d = make_variant(tiny_dir, tmp_path, "pue: 1.1\n", "pue: 0.5\n")
    text = (d / "scenario.yaml").read_text("utf-8").replace("pue: 1.3\n", "pue: 9\n")
    (d / "scenario.yaml").write_text(text, "utf-8")
    (d / "signals" / "nowhere.csv").write_text(f"{CSV_HEADER}\n", "utf-8")
    problems = validate_dir(d)
    fields = {(Path(p.file).name, p.field) for p in problems}
    assert ("scenario.yaml", "centers[0].pue") in fields
    assert ("scenario.yaml", "centers[2].pue") in fields


@pytest.mark.parametrize(
    ("old", "new", "field", "needle"),
    [
        ('hub: "coast"\n', 'hub: "nohub"\n', "centers[0].hub", '"nohub"'),
        (
            'cluster: "dunes"\n    pue: 1.1\n',
            'cluster: "zzz"\n    pue: 1.1\n',
            "centers[2].cluster",
            '"zzz"',
        ),
        (
            "{h800: 32, ascend-910b: 16}",
            "{h800: 32, tpu-v9: 16}",
            "centers[2].inventory.tpu-v9",
            "tpu-v9",
        ),
        ("{a100: 16, h20: 16}", "{a100: 16, h20: -4}", "centers[3].inventory.h20", "h20: -4"),
        (
            "province: coastal, lat: 31.4",
            "province: nowhere, lat: 31.4",
            "cities[0].province",
            "nowhere",
        ),
        ("{id: dunes, hub: desert", "{id: dunes, hub: mountain", "clusters[0].hub", "mountain"),
        ("timezone: Asia/Shanghai", "timezone: Mars/Olympus", "timezone", "Mars/Olympus"),
        (
            "start_h: 10, end_h: 15",
            "start_h: 10, end_h: 9",
            "provinces[0].tariff.periods[1].end_h",
            "end_h: 9",
        ),
        (
            "start_h: 10, end_h: 16",
            "start_h: 16, end_h: 23",
            "provinces[1].tariff.periods[1]",
            "start_h: 16, end_h: 23",
        ),
        ("- id: desert-green", "- id: desert-ai", "centers[3].id", "- id: desert-ai\n"),
        (
            "green_ppa_share: 0.3",
            "green_ppa_share: 1.3",
            "centers[3].power.green_ppa_share",
            "share: 1.3",
        ),
    ],
)
def test_cross_reference_problems(
    tiny_dir: Path, tmp_path: Path, old: str, new: str, field: str, needle: str
) -> None:
    d = make_variant(tiny_dir, tmp_path, old, new)
    p = only(validate_dir(d))
    assert p.field == field
    needle = needle.rstrip("\n")
    if needle == "- id: desert-ai":
        # the duplicate is the second occurrence
        lines = [
            i
            for i, ln in enumerate((d / "scenario.yaml").read_text("utf-8").splitlines(), 1)
            if ln.strip() == needle
        ]
        assert p.line == lines[1]
    else:
        assert p.line == line_of(d / "scenario.yaml", needle)


def test_center_without_capacity(tiny_dir: Path, tmp_path: Path) -> None:
    d = make_variant(
        tiny_dir, tmp_path, "    inventory: {dcu-k100: 16, h100: 4}\n    cpu_cores: 512\n", ""
    )
    p = only(validate_dir(d))
    assert p.field == "centers[1]"
    assert p.line == line_of(d / "scenario.yaml", "- id: coast-hpc")


# --------------------------------------------------------------------------- signal CSVs


def write_csv(d: Path, name: str, rows: list[str], header: str = CSV_HEADER) -> Path:
    path = d / "signals" / name
    path.write_text("\n".join([header, *rows]) + "\n", "utf-8")
    return path


GOOD_ROWS = [
    "2025-07-01T00:00:00Z,0.5,600,0.2",
    "2025-07-01T01:00:00Z,0.6,600,0.2",
    "2025-07-01T02:00:00Z,0.7,600,0.2",
]


def test_csv_wrong_header(tiny_dir: Path, tmp_path: Path) -> None:
    d = make_variant(tiny_dir, tmp_path)
    path = write_csv(d, "coast-ai.csv", GOOD_ROWS, header="time,price,carbon,green")
    p = only(validate_dir(d))
    assert Path(p.file) == path
    assert p.line == 1
    assert p.field == "header"
    assert "price_cny_per_kwh" in p.message


@pytest.mark.parametrize(
    ("row_no", "bad_row", "field"),
    [
        (1, "2025-07-01T01:00:00Z,abc,600,0.2", "price_cny_per_kwh"),
        (2, "2025-07-01T02:00:00Z,0.7,600,1.5", "green_fraction"),
        (0, "2025-07-01T00:00:00,0.5,600,0.2", "time"),
        (2, "2025-07-01T02:00:00Z,0.7,-1,0.2", "carbon_g_per_kwh"),
        (2, "2025-07-01T02:00:00Z,0.7,nan,0.2", "carbon_g_per_kwh"),
        (1, "2025-07-01T01:00:00Z,0.6,600", "row"),
        (2, "2025-07-01T00:30:00Z,0.7,600,0.2", "time"),
        (1, "yesterday,0.6,600,0.2", "time"),
    ],
)
def test_csv_bad_row(tiny_dir: Path, tmp_path: Path, row_no: int, bad_row: str, field: str) -> None:
    d = make_variant(tiny_dir, tmp_path)
    rows = list(GOOD_ROWS)
    rows[row_no] = bad_row
    path = write_csv(d, "desert-ai.csv", rows)
    p = only(validate_dir(d))
    assert Path(p.file) == path
    assert p.line == row_no + 2  # header is line 1
    assert p.field == field
    assert_fails_to_load(d, [p])


def test_csv_line_numbers_count_blank_lines(tiny_dir: Path, tmp_path: Path) -> None:
    d = make_variant(tiny_dir, tmp_path)
    rows = [GOOD_ROWS[0], "", GOOD_ROWS[1], "2025-07-01T02:00:00Z,0.7,600,x"]
    write_csv(d, "desert-ai.csv", rows)
    p = only(validate_dir(d))
    assert p.line == 5
    assert p.field == "green_fraction"


def test_csv_naive_timestamp_message(tiny_dir: Path, tmp_path: Path) -> None:
    d = make_variant(tiny_dir, tmp_path)
    write_csv(d, "desert-ai.csv", ["2025-07-01 08:00:00,0.5,600,0.2"])
    p = only(validate_dir(d))
    assert p.field == "time"
    assert p.line == 2
    assert "offset" in p.message


def test_csv_for_unknown_center(tiny_dir: Path, tmp_path: Path) -> None:
    d = make_variant(tiny_dir, tmp_path)
    path = write_csv(d, "atlantis-dc.csv", GOOD_ROWS)
    p = only(validate_dir(d))
    assert Path(p.file) == path
    assert "atlantis-dc" in p.message


def test_non_csv_file_in_signals(tiny_dir: Path, tmp_path: Path) -> None:
    d = make_variant(tiny_dir, tmp_path)
    (d / "signals" / "notes.txt").write_text("hello", "utf-8")
    p = only(validate_dir(d))
    assert Path(p.file).name == "notes.txt"


def test_top_level_not_a_mapping(tiny_dir: Path, tmp_path: Path) -> None:
    d = make_variant(tiny_dir, tmp_path)
    (d / "scenario.yaml").write_text("- just\n- a list\n", "utf-8")
    p = only(validate_dir(d))
    assert p.line == 1


def test_deferral_rule_is_read_and_defaults_to_the_planner_s_window(
    tiny_dir: Path, tmp_path: Path
) -> None:
    assert load_scenario(tiny_dir).deferral == DeferralRule(12, 10.0)
    d = make_variant(
        tiny_dir, tmp_path, "network:\n",
        "deferral:\n  max_defer_h: 3\n  expiry_cny_per_kwh: 2.5\nnetwork:\n",
    )  # fmt: skip
    assert load_scenario(d).deferral == DeferralRule(3, 2.5)


def test_negative_deferral_limit_is_refused_with_its_line(tiny_dir: Path, tmp_path: Path) -> None:
    d = make_variant(tiny_dir, tmp_path, "network:\n", "deferral:\n  max_defer_h: -1\nnetwork:\n")
    p = only(validate_dir(d))
    assert p.line == line_of(d / "scenario.yaml", "max_defer_h: -1")
    assert p.field == "deferral.max_defer_h"
    assert_fails_to_load(d, [p])


def test_deferral_rule_refuses_bad_values_in_code() -> None:
    with pytest.raises(ValueError, match="max_defer_h must be >= 0"):
        DeferralRule(max_defer_h=-2)
    with pytest.raises(ValueError, match="expiry_cny_per_kwh must be >= 0"):
        DeferralRule(expiry_cny_per_kwh=float("nan"))
