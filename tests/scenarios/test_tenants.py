"""Tenants files: a good file round trip, the example, and every bad input named by its file,
line and field (variants of one good text, the expected line found from the text itself)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from suanwang.core.governance import Governance, Rules, TenantQuota
from suanwang.core.jobs import Priority
from suanwang.core.scenario import Scenario
from suanwang.scenarios.loader import Problem
from suanwang.scenarios.tenants import (
    TenantsError,
    cap_names,
    load_tenants,
    parse_tenants_text,
)

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "tenants.yaml"
FILE = "tenants.yaml"

GOOD = """\
rules:
  half_life_h: 12
  aging_h: 3
  promote_after_h: 48
  preemption: false
  max_preemptions_per_round: 8
  protect_min: 45
cohorts:
  - name: tsinghua
    tenants:
      - name: nlp-lab
        quota_scu_per_h: 120
        borrow_limit_scu_per_h: 60
        lend_limit_scu_per_h: 100
        weight: 1.5
        classes: [normal, batch, preemptible]
        caps: {families: {nvidia: 80}, hubs: {gansu: 50}}
        budget_cny_per_month: 50000
        max_spend_cny_per_h: "500.50"
      - name: vision-lab
        quota_scu_per_h: 80
  - name: acme
    tenants:
      - name: acme-train
        quota_scu_per_h: 0
"""


def line_of(text: str, needle: str) -> int:
    """1-based line of the only line containing ``needle``."""
    lines = [i for i, ln in enumerate(text.splitlines(), 1) if needle in ln]
    assert len(lines) == 1, (needle, lines)
    return lines[0]


def variant(old: str, new: str, text: str = GOOD) -> str:
    assert text.count(old) == 1, f"text {old!r} must occur exactly once"
    return text.replace(old, new)


def problems(text: str, scenario: Scenario) -> list[Problem]:
    with pytest.raises(TenantsError) as info:
        parse_tenants_text(text, FILE, scenario)
    for p in info.value.problems:
        assert str(p) in str(info.value)
    return info.value.problems


def only(text: str, scenario: Scenario) -> Problem:
    found = problems(text, scenario)
    assert len(found) == 1, found
    assert found[0].file == FILE
    return found[0]


# --------------------------------------------------------------------------- good files


def test_good_file(china: Scenario) -> None:
    gov = parse_tenants_text(GOOD, FILE, china)
    assert gov.rules == Rules(
        half_life_s=12 * 3600.0,
        aging_s=3 * 3600.0,
        promote_after_s=48 * 3600.0,
        preemption=False,
        max_preemptions_per_round=8,
        protect_s=45 * 60.0,
    )
    assert list(gov.tenants) == ["nlp-lab", "vision-lab", "acme-train"]
    assert gov.cohorts() == {"tsinghua": ("nlp-lab", "vision-lab"), "acme": ("acme-train",)}
    assert gov.tenants["nlp-lab"] == TenantQuota(
        name="nlp-lab",
        cohort="tsinghua",
        quota_scu_per_h=120.0,
        borrow_limit_scu_per_h=60.0,
        lend_limit_scu_per_h=100.0,
        weight=1.5,
        classes=frozenset({Priority.NORMAL, Priority.BATCH, Priority.PREEMPTIBLE}),
        family_caps_scu_per_h={"nvidia": 80.0},
        hub_caps_scu_per_h={"gansu": 50.0},
        budget_cny_per_month=Decimal("50000.00"),
        max_spend_cny_per_h=Decimal("500.50"),
    )
    budget = gov.tenants["nlp-lab"].budget_cny_per_month
    assert isinstance(budget, Decimal) and str(budget) == "50000.00"
    # what a tenant leaves out takes the defaults of core/governance.py
    assert gov.tenants["vision-lab"] == TenantQuota(
        name="vision-lab", cohort="tsinghua", quota_scu_per_h=80.0
    )
    assert gov.tenants["acme-train"].classes == frozenset(Priority)


def test_rules_are_optional(china: Scenario) -> None:
    text = "cohorts:\n  - name: c\n    tenants:\n      - {name: t, quota_scu_per_h: 1}\n"
    assert parse_tenants_text(text, FILE, china).rules == Rules()


def test_the_example_validates_against_china(china: Scenario) -> None:
    gov = load_tenants(EXAMPLE, china)
    assert len(gov.cohorts()) == 2 and len(gov.tenants) == 5
    families, hubs = cap_names(china)
    for t in gov.tenants.values():
        assert set(t.family_caps_scu_per_h) <= families
        assert set(t.hub_caps_scu_per_h) <= hubs


def test_load_tenants_reads_a_file(china: Scenario, tmp_path: Path) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text(GOOD, "utf-8")
    assert load_tenants(path, china) == parse_tenants_text(GOOD, FILE, china)


def test_cap_names(china: Scenario) -> None:
    families, hubs = cap_names(china)
    assert {"nvidia", "huawei", "hygon", "cambricon", "cpu"} <= families
    assert {"gansu", "ningxia", "jingjinji"} <= hubs


# --------------------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    ("old", "new", "needle", "field", "words"),
    [
        # unknown keys, at every level
        (
            "        weight: 1.5",
            "        weight: 1.5\n        wieght: 2",
            "wieght",
            "cohorts[0].tenants[0].wieght",
            ["unknown key", "weight"],
        ),
        ("rules:", "quotas: 1\nrules:", "quotas", "quotas", ["unknown key", "cohorts"]),
        (
            "  protect_min: 45",
            "  protect_min: 45\n  half_life: 3",
            "half_life:",
            "rules.half_life",
            ["unknown key", "half_life_h"],
        ),
        (
            "{families: {nvidia: 80}",
            "{vendors: {nvidia: 80}",
            "vendors",
            "cohorts[0].tenants[0].caps.vendors",
            ["unknown key", "families"],
        ),
        (
            "  - name: acme\n",
            "  - name: acme\n    budget: 3\n",
            "budget: 3",
            "cohorts[1].budget",
            ["unknown key"],
        ),
        # negative numbers
        (
            "quota_scu_per_h: 80",
            "quota_scu_per_h: -80",
            "-80",
            "cohorts[0].tenants[1].quota_scu_per_h",
            ["must be >= 0", "-80"],
        ),
        (
            "borrow_limit_scu_per_h: 60",
            "borrow_limit_scu_per_h: -1",
            "borrow_limit",
            "cohorts[0].tenants[0].borrow_limit_scu_per_h",
            [">= 0"],
        ),
        (
            "lend_limit_scu_per_h: 100",
            "lend_limit_scu_per_h: -100",
            "lend_limit",
            "cohorts[0].tenants[0].lend_limit_scu_per_h",
            [">= 0"],
        ),
        (
            "weight: 1.5",
            "weight: -1.5",
            "weight",
            "cohorts[0].tenants[0].weight",
            ["> 0"],
        ),
        (
            "budget_cny_per_month: 50000",
            "budget_cny_per_month: -50000",
            "budget",
            "cohorts[0].tenants[0].budget_cny_per_month",
            [">= 0"],
        ),
        (
            'max_spend_cny_per_h: "500.50"',
            'max_spend_cny_per_h: "-1"',
            "max_spend",
            "cohorts[0].tenants[0].max_spend_cny_per_h",
            [">= 0"],
        ),
        (
            "nvidia: 80",
            "nvidia: -80",
            "nvidia",
            "cohorts[0].tenants[0].caps.families.nvidia",
            [">= 0"],
        ),
        ("aging_h: 3", "aging_h: -3", "aging_h", "rules.aging_h", ["> 0"]),
        ("protect_min: 45", "protect_min: -45", "protect_min", "rules.protect_min", [">= 0"]),
        # weight 0, half-life 0
        ("weight: 1.5", "weight: 0", "weight", "cohorts[0].tenants[0].weight", ["> 0"]),
        ("half_life_h: 12", "half_life_h: 0", "half_life_h", "rules.half_life_h", ["> 0"]),
        # classes
        (
            "classes: [normal, batch, preemptible]",
            "classes: [normal, bulk, preemptible]",
            "classes",
            "cohorts[0].tenants[0].classes[1]",
            ["urgent", "preemptible"],
        ),
        (
            "classes: [normal, batch, preemptible]",
            "classes: []",
            "classes",
            "cohorts[0].tenants[0].classes",
            ["at least one class"],
        ),
        # the cohort cannot lend what a tenant may borrow (core.governance.check)
        (
            "borrow_limit_scu_per_h: 60",
            "borrow_limit_scu_per_h: 81",
            "borrow_limit",
            "cohorts[0].tenants[0].borrow_limit_scu_per_h",
            ["81", "'tsinghua'", "80"],
        ),
        (
            "quota_scu_per_h: 0",
            "quota_scu_per_h: 0\n        borrow_limit_scu_per_h: 1",
            "borrow_limit_scu_per_h: 1",
            "cohorts[1].tenants[0].borrow_limit_scu_per_h",
            ["'acme'"],
        ),
        # caps on what the scenario does not have
        (
            "nvidia: 80",
            "tpu: 80",
            "tpu",
            "cohorts[0].tenants[0].caps.families.tpu",
            ["unknown", "nvidia", "huawei"],
        ),
        (
            "gansu: 50",
            "atlantis: 50",
            "atlantis",
            "cohorts[0].tenants[0].caps.hubs.atlantis",
            ["unknown", "gansu"],
        ),
        # numbers that are not numbers
        (
            "quota_scu_per_h: 80",
            "quota_scu_per_h: lots",
            "lots",
            "cohorts[0].tenants[1].quota_scu_per_h",
            ["'lots' is not a number"],
        ),
        (
            "quota_scu_per_h: 80",
            "quota_scu_per_h: true",
            "true",
            "cohorts[0].tenants[1].quota_scu_per_h",
            ["boolean"],
        ),
        (
            "quota_scu_per_h: 80",
            "quota_scu_per_h: [80]",
            "[80]",
            "cohorts[0].tenants[1].quota_scu_per_h",
            ["not a number"],
        ),
        (
            "weight: 1.5",
            "weight: .nan",
            "weight",
            "cohorts[0].tenants[0].weight",
            ["not a finite number"],
        ),
        (
            "quota_scu_per_h: 80",
            "quota_scu_per_h: .inf",
            ".inf",
            "cohorts[0].tenants[1].quota_scu_per_h",
            ["not a finite number"],
        ),
        (
            "quota_scu_per_h: 80",
            "quota_scu_per_h: 1e24",
            "1e24",
            "cohorts[0].tenants[1].quota_scu_per_h",
            ["absurdly large"],
        ),
        (
            "budget_cny_per_month: 50000",
            "budget_cny_per_month: false",
            "budget",
            "cohorts[0].tenants[0].budget_cny_per_month",
            ["False", "not an amount"],
        ),
        (
            "budget_cny_per_month: 50000",
            "budget_cny_per_month: plenty",
            "budget",
            "cohorts[0].tenants[0].budget_cny_per_month",
            ["'plenty' is not a plain amount"],
        ),
        # money: NaN, infinity, absurd, below the fen
        (
            "budget_cny_per_month: 50000",
            "budget_cny_per_month: .nan",
            "budget",
            "cohorts[0].tenants[0].budget_cny_per_month",
            ["not a finite amount"],
        ),
        (
            "budget_cny_per_month: 50000",
            'budget_cny_per_month: "-Infinity"',
            "budget",
            "cohorts[0].tenants[0].budget_cny_per_month",
            ["not a finite amount"],
        ),
        (
            "budget_cny_per_month: 50000",
            "budget_cny_per_month: 1.0e+12",
            "budget",
            "cohorts[0].tenants[0].budget_cny_per_month",
            ["too large", "999,999,999,999.99"],
        ),
        (
            'max_spend_cny_per_h: "500.50"',
            "max_spend_cny_per_h: 1.0e+24",
            "max_spend",
            "cohorts[0].tenants[0].max_spend_cny_per_h",
            ["too large"],
        ),
        (
            'max_spend_cny_per_h: "500.50"',
            'max_spend_cny_per_h: "500.505"',
            "max_spend",
            "cohorts[0].tenants[0].max_spend_cny_per_h",
            ["more than 2 decimals"],
        ),
        # rules' types
        (
            "preemption: false",
            "preemption: sometimes",
            "sometimes",
            "rules.preemption",
            ["boolean"],
        ),
        (
            "max_preemptions_per_round: 8",
            "max_preemptions_per_round: 8.5",
            "max_preemptions",
            "rules.max_preemptions_per_round",
            ["whole number"],
        ),
        # names
        (
            "name: vision-lab",
            "name: 42",
            "name: 42",
            "cohorts[0].tenants[1].name",
            ["string"],
        ),
        (
            "name: vision-lab",
            'name: " vision-lab"',
            "vision-lab",
            "cohorts[0].tenants[1].name",
            ["blanks"],
        ),
        (
            "name: vision-lab",
            'name: ""',
            'name: ""',
            "cohorts[0].tenants[1].name",
            ["at least 1"],
        ),
        # structure
        (
            "quota_scu_per_h: 80\n",
            "weight: 2\n",
            "name: vision-lab",
            "cohorts[0].tenants[1].quota_scu_per_h",
            ["required"],
        ),
        (
            "    tenants:\n      - name: acme-train\n        quota_scu_per_h: 0\n",
            "    tenants: []\n",
            "tenants: []",
            "cohorts[1].tenants",
            ["at least 1"],
        ),
        (
            "        weight: 1.5\n",
            "        weight: 1.5\n        weight: 2\n",
            "weight: 2",
            "cohorts[0].tenants[0].weight",
            ["given twice", f"line {line_of(GOOD, 'weight: 1.5')}"],
        ),
    ],
)
def test_bad_input(
    china: Scenario, old: str, new: str, needle: str, field: str, words: list[str]
) -> None:
    text = variant(old, new)
    p = only(text, china)
    assert (p.line, p.field) == (line_of(text, needle), field), p
    for w in words:
        assert w in p.message, (w, p)
    assert str(p).startswith(f"{FILE}:{p.line}: {field}: ")


def nth_line(text: str, needle: str, n: int) -> int:
    """1-based line of the ``n``-th line (from 0) containing ``needle``."""
    return [i for i, ln in enumerate(text.splitlines(), 1) if needle in ln][n]


def test_a_tenant_named_twice_in_another_cohort(china: Scenario) -> None:
    text = variant("name: acme-train", "name: nlp-lab")
    p = only(text, china)
    assert (p.line, p.field) == (nth_line(text, "name: nlp-lab", 1), "cohorts[1].tenants[0].name")
    assert "'nlp-lab' is named twice" in p.message and "'tsinghua'" in p.message
    assert "cohorts[0].tenants[0]" in p.message


def test_a_tenant_named_twice_in_its_cohort(china: Scenario) -> None:
    text = variant("name: vision-lab", "name: nlp-lab")
    p = only(text, china)
    assert (p.line, p.field) == (nth_line(text, "name: nlp-lab", 1), "cohorts[0].tenants[1].name")


def test_a_cohort_named_twice(china: Scenario) -> None:
    text = variant("- name: acme\n", "- name: tsinghua\n")
    p = only(text, china)
    assert (p.line, p.field) == (nth_line(text, "name: tsinghua", 1), "cohorts[1].name")
    assert "'tsinghua' is named twice" in p.message and "cohorts[0]" in p.message


def test_every_problem_is_listed(china: Scenario) -> None:
    text = variant("nvidia: 80", "tpu: 80")
    text = variant("gansu: 50", "atlantis: 50", text)
    text = variant("borrow_limit_scu_per_h: 60", "borrow_limit_scu_per_h: 500", text)
    text = variant("name: acme-train", "name: vision-lab", text)
    found = problems(text, china)
    assert {p.field for p in found} == {
        "cohorts[0].tenants[0].caps.families.tpu",
        "cohorts[0].tenants[0].caps.hubs.atlantis",
        "cohorts[0].tenants[0].borrow_limit_scu_per_h",
        "cohorts[1].tenants[0].name",
    }
    schema = variant(
        "weight: 1.5", "weight: 0", variant("quota_scu_per_h: 80", "quota_scu_per_h: x")
    )
    assert len(problems(schema, china)) == 2


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("", 1, ["empty"]),
        ("# only a comment\n\n", 1, ["empty"]),
        ("- a\n- b\n", 1, ["mapping"]),
        ("\n\njust text\n", 3, ["mapping"]),
        ("cohorts:\n  - name: [unclosed\n", 3, ["not valid YAML"]),
        ("rules:\n  half_life_h: 1\n bad: 2\n", 3, ["not valid YAML"]),
    ],
)
def test_bad_files(china: Scenario, text: str, line: int, words: list[str]) -> None:
    p = only(text, china)
    assert p.line == line, p
    for w in words:
        assert w in p.message


def test_cohorts_are_required(china: Scenario) -> None:
    p = only("rules: {aging_h: 2}\n", china)
    assert (p.line, p.field) == (1, "cohorts") and "required" in p.message.lower()


def test_unreadable_files(china: Scenario, tmp_path: Path) -> None:
    with pytest.raises(TenantsError, match="cannot read"):
        load_tenants(tmp_path / "missing.yaml", china)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("cohorts: caf\xe9\n".encode("latin-1"))
    with pytest.raises(TenantsError, match="not UTF-8"):
        load_tenants(latin, china)


def test_tenants_error_is_a_value_error() -> None:
    assert issubclass(TenantsError, ValueError)


# --------------------------------------------------------------------------- properties


@st.composite
def governances(draw: st.DrawFn, families: list[str], hubs: list[str]) -> Governance:
    """A consistent governance: no tenant borrows more than its cohort mates lend."""
    rate = st.integers(0, 10**6).map(float) | st.floats(0, 1e6, allow_nan=False)
    money = st.none() | st.decimals(0, 10**9, places=2, allow_nan=False, allow_infinity=False)
    tenants: dict[str, TenantQuota] = {}
    n_cohorts = draw(st.integers(1, 3))
    for c in range(n_cohorts):
        members = []
        for k in range(draw(st.integers(1, 4))):
            members.append(
                TenantQuota(
                    name=f"t{c}-{k}",
                    cohort=f"cohort-{c}",
                    quota_scu_per_h=draw(rate),
                    lend_limit_scu_per_h=draw(st.none() | rate),
                    weight=draw(st.floats(0.01, 100, allow_nan=False)),
                    classes=frozenset(draw(st.sets(st.sampled_from(list(Priority)), min_size=1))),
                    family_caps_scu_per_h=draw(st.dictionaries(st.sampled_from(families), rate)),
                    hub_caps_scu_per_h=draw(st.dictionaries(st.sampled_from(hubs), rate)),
                    budget_cny_per_month=draw(money),
                    max_spend_cny_per_h=draw(money),
                )
            )
        for i, t in enumerate(members):
            others = sum(m.lendable_scu_per_h for j, m in enumerate(members) if j != i)
            borrow = draw(st.floats(0, 1, allow_nan=False)) * others
            tenants[t.name] = replace(t, borrow_limit_scu_per_h=borrow)
    rules = Rules(
        half_life_s=draw(st.integers(1, 1000)) * 3600.0,
        aging_s=draw(st.integers(1, 1000)) * 3600.0,
        promote_after_s=draw(st.integers(1, 1000)) * 3600.0,
        preemption=draw(st.booleans()),
        max_preemptions_per_round=draw(st.integers(0, 1000)),
        protect_s=draw(st.integers(0, 1000)) * 60.0,
    )
    return Governance(tenants=tenants, rules=rules)


def to_yaml(gov: Governance) -> str:
    """The file a person would write for ``gov`` (money as quoted decimals)."""
    r = gov.rules
    cohorts = []
    for cohort, names in gov.cohorts().items():
        tenants = []
        for name in names:
            t = gov.tenants[name]
            entry: dict[str, object] = {
                "name": t.name,
                "quota_scu_per_h": t.quota_scu_per_h,
                "borrow_limit_scu_per_h": t.borrow_limit_scu_per_h,
                "weight": t.weight,
                "classes": [p.value for p in Priority if p in t.classes],
                "caps": {
                    "families": dict(t.family_caps_scu_per_h),
                    "hubs": dict(t.hub_caps_scu_per_h),
                },
            }
            if t.lend_limit_scu_per_h is not None:
                entry["lend_limit_scu_per_h"] = t.lend_limit_scu_per_h
            for money in ("budget_cny_per_month", "max_spend_cny_per_h"):
                if getattr(t, money) is not None:
                    entry[money] = str(getattr(t, money))
            tenants.append(entry)
        cohorts.append({"name": cohort, "tenants": tenants})
    return yaml.safe_dump(
        {
            "rules": {
                "half_life_h": r.half_life_s / 3600,
                "aging_h": r.aging_s / 3600,
                "promote_after_h": r.promote_after_s / 3600,
                "preemption": r.preemption,
                "max_preemptions_per_round": r.max_preemptions_per_round,
                "protect_min": r.protect_s / 60,
            },
            "cohorts": cohorts,
        },
        sort_keys=False,
    )


_FAMILIES = ["nvidia", "huawei", "hygon", "cambricon", "cpu"]
_HUBS = ["jingjinji", "gansu", "ningxia", "guizhou"]


@given(governances(_FAMILIES, _HUBS))
def test_round_trip(china: Scenario, gov: Governance) -> None:
    back = parse_tenants_text(to_yaml(gov), FILE, china)
    assert back == gov
    assert list(back.tenants) == list(gov.tenants)


@given(
    governances(_FAMILIES, _HUBS),
    st.sampled_from(["quota_scu_per_h", "borrow_limit_scu_per_h", "weight"]),
    st.floats(-1e6, -1e-6),
    st.data(),
)
def test_a_negative_number_is_named_by_its_line(
    china: Scenario, gov: Governance, key: str, value: float, data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(gov.tenants)))
    doc = yaml.safe_load(to_yaml(gov))
    where = next(
        (i, j)
        for i, c in enumerate(doc["cohorts"])
        for j, t in enumerate(c["tenants"])
        if t["name"] == name
    )
    doc["cohorts"][where[0]]["tenants"][where[1]][key] = value
    text = yaml.safe_dump(doc, sort_keys=False)
    found = problems(text, china)
    field = f"cohorts[{where[0]}].tenants[{where[1]}].{key}"
    bad = [p for p in found if p.field == field]
    assert len(bad) == 1, found
    node = yaml.compose(text)
    assert node is not None
    cohort = dict((k.value, v) for k, v in node.value)["cohorts"].value[where[0]]
    tenant = dict((k.value, v) for k, v in cohort.value)["tenants"].value[where[1]]
    key_node = next(k for k, _ in tenant.value if k.value == key)
    assert bad[0].line == key_node.start_mark.line + 1
