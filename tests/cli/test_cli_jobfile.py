"""Job files: YAML checked with the API's JobSpec, every problem as file:line: field: message."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from suanwang.cli.jobfile import JobFileError, load_job_file, parse_job_text
from suanwang.server.schemas import JobSpec

GOOD = """\
# fine-tune on four cards
name: finetune-qwen
command: "python finetune.py --epochs 3"
resources:
  cpus: 32
  accelerator: any
  count: {count}
  mem_gb: 256
duration_s: 7200
kind: finetune
origin: shanghai
"""


def problems(text: str, label: str = "job.yaml") -> list[str]:
    with pytest.raises(JobFileError) as info:
        parse_job_text(text, label)
    assert str(info.value) == "\n".join(str(p) for p in info.value.problems)
    return [str(p) for p in info.value.problems]


def test_a_valid_file_gives_the_same_spec_as_the_api() -> None:
    jf = parse_job_text(GOOD.format(count=4), "job.yaml")
    assert not jf.is_list and len(jf.jobs) == 1
    spec = jf.jobs[0]
    assert spec == JobSpec.model_validate(yaml.safe_load(GOOD.format(count=4)))
    assert spec.resources.cards == 4 and spec.stacks == ["cuda"]


def test_a_wrong_type_names_file_line_and_field() -> None:
    assert problems(GOOD.format(count="four")) == [
        "job.yaml:7: resources.count: Input should be a valid integer (got 'four')"
    ]


def test_every_problem_is_listed_in_line_order() -> None:
    text = GOOD.format(count=-1).replace("kind: finetune", "kind: guessing") + "nmae: x\n"
    assert problems(text) == [
        "job.yaml:7: resources.count: Input should be greater than or equal to 0 (got -1)",
        "job.yaml:10: kind: Input should be 'inference', 'interactive', 'training', 'finetune', "
        "'hpc', 'render', 'analytics' or 'backup' (got 'guessing')",
        "job.yaml:12: nmae: unknown field (did you mean 'name'?)",
    ]


def test_unknown_nested_fields_get_a_suggestion_too() -> None:
    text = GOOD.format(count=4).replace("  mem_gb: 256", "  memory_gb: 256")
    assert problems(text) == [
        "job.yaml:8: resources.memory_gb: unknown field (did you mean 'mem_gb'?)"
    ]
    far = GOOD.format(count=4) + "zzz: 1\n"
    (msg,) = problems(far)
    assert msg.startswith("job.yaml:12: zzz: unknown field (known: name, command, script,")


def test_missing_fields_and_whole_job_rules_point_at_the_job() -> None:
    assert problems("name: x\ncommand: 'true'\norigin: beijing\n") == [
        "job.yaml:1: duration_s: Field required"
    ]
    both = "name: x\ncommand: 'true'\nscript: 'echo'\nduration_s: 5\norigin: beijing\n"
    assert problems(both) == ["job.yaml:1: Value error, give exactly one of 'command' or 'script'"]


def test_a_key_given_twice_is_a_problem_not_a_silent_overwrite() -> None:
    text = GOOD.format(count=4) + "name: other\n"
    assert problems(text) == ["job.yaml:12: name: given twice (also on line 2)"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\n  command: [\n", "job.yaml:2: not valid YAML: mapping values are not allowed"),
        ("name: [x\norigin: y\n", "job.yaml:2: not valid YAML: expected ',' or ']', but got"),
        ("name: 'x\n", "job.yaml:2: not valid YAML: found unexpected end of stream"),
        ("", "job.yaml: empty file: a job file holds one job"),
        ("# only a comment\n\n", "job.yaml: empty file: a job file holds one job"),
        ("just words\n", "job.yaml:1: a job file holds one job (a mapping of fields: name, "
                         "command, ...) or a list of jobs, not a string"),
        ("[]\n", "job.yaml:1: the list of jobs is empty"),
        ("name: a\n---\nname: b\n", "job.yaml:2: not valid YAML: but found another document "
                                    "(expected a single document in the stream); put several "
                                    "jobs in one top-level list"),
    ],
)  # fmt: skip
def test_files_that_are_not_jobs(text: str, expected: str) -> None:
    (msg,) = problems(text)
    assert msg.startswith(expected), msg


LIST = """\
- name: first
  command: "true"
  duration_s: 60
  origin: beijing
- 42
- name: third
  command: "true"
  duration_s: sixty
  origin: beijing
"""


def test_a_list_of_jobs_reports_each_by_index_and_line() -> None:
    assert problems(LIST) == [
        "job.yaml:5: [1]: a job is a mapping of fields (name, command, ...), not a number (42)",
        "job.yaml:8: [2].duration_s: Input should be a valid number (got 'sixty')",
    ]
    fixed = LIST.replace("- 42\n", "").replace("sixty", "60")
    jf = parse_job_text(fixed, "job.yaml")
    assert jf.is_list and [j.name for j in jf.jobs] == ["first", "third"]
    one = parse_job_text(fixed.split("- name: third")[0], "job.yaml")
    assert one.is_list and len(one.jobs) == 1  # a list of one is still a list


def test_server_errors_are_placed_in_the_file() -> None:
    jf = parse_job_text(LIST.replace("- 42\n", "").replace("sixty", "60"), "jobs.yaml")
    detail = [
        {"loc": ["body", "origin"], "msg": "unknown place 'atlantis'", "type": "scenario"},
        {"loc": ["body", "resources", "accelerator"], "msg": "unknown accelerator"},
        {"loc": ["body", "stacks", 0], "msg": "unknown stack"},
        {"loc": ["header", "Idempotency-Key"], "msg": "already used"},
        "something else",
    ]
    assert [str(p) for p in jf.server_problems(1, detail)] == [
        "jobs.yaml:8: [1].origin: unknown place 'atlantis'",
        "jobs.yaml:5: [1].resources.accelerator: unknown accelerator",  # nearest parent
        "jobs.yaml:5: [1].stacks[0]: unknown stack",
        "jobs.yaml:5: [1]: header Idempotency-Key: already used",
        "jobs.yaml:5: [1]: something else",
    ]
    single = parse_job_text(GOOD.format(count=4), "job.yaml")
    assert [str(p) for p in single.server_problems(0, "no such thing")] == [
        "job.yaml:2: no such thing"
    ]
    assert [str(p) for p in single.server_problems(0, [{"loc": ["body", "origin"], "msg": "x"}])
            ] == ["job.yaml:11: origin: x"]  # fmt: skip


def test_load_job_file_reads_the_file_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(GOOD.format(count="four"), encoding="utf-8")
    with pytest.raises(JobFileError, match=rf"^{path}:7: resources\.count: "):
        load_job_file(path)
    with pytest.raises(OSError):
        load_job_file(tmp_path / "missing.yaml")


# --------------------------------------------------------------------------- properties

FIELDS = ["name", "command", "duration_s", "origin", "kind", "deadline_s", "data_gb"]
names = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1,
                max_size=40)  # fmt: skip


@given(
    name=names,
    duration=st.floats(1, 1e6),
    count=st.integers(0, 64),
    deadline=st.none() | st.floats(1, 1e6),
    as_list=st.booleans(),
)
def test_any_valid_spec_round_trips_through_a_yaml_file(
    name: str, duration: float, count: int, deadline: float | None, as_list: bool
) -> None:
    body = {"name": name, "command": "run", "duration_s": duration, "origin": "beijing",
            "resources": {"count": count}, "deadline_s": deadline}  # fmt: skip
    text = yaml.safe_dump([body] if as_list else body, allow_unicode=True, sort_keys=False)
    jf = parse_job_text(text, "f.yaml")
    assert jf.is_list is as_list
    assert jf.jobs == [JobSpec.model_validate(body)]


@given(bad=st.sampled_from(FIELDS), order=st.permutations(FIELDS))
def test_the_reported_line_is_the_line_of_the_bad_field(bad: str, order: list[str]) -> None:
    good = {"name": "x", "command": "run", "duration_s": 60, "origin": "beijing",
            "kind": "training", "deadline_s": 600, "data_gb": 1}  # fmt: skip
    values = {k: ([1, 2] if k == bad else good[k]) for k in order}  # a list fits no field
    lines = [yaml.safe_dump({k: v}, default_flow_style=True).strip()[1:-1] for k, v in
             values.items()]  # fmt: skip
    msgs = problems("\n".join(lines) + "\n", "f.yaml")
    assert msgs and all(m.startswith(f"f.yaml:{order.index(bad) + 1}: {bad}: ") for m in msgs)
