"""`suanwang testbed status | down` on a directory without a sound testbed: a sentence, never a
traceback (the clusters themselves are tested in tests/slurm)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

BROKEN = {
    "empty": "",
    "not JSON": "{clusters: [",
    "a list": "[1, 2]",
    "no clusters": '{"dir": "/x", "user": "u", "munged_pid": 1}',
    "a cluster without its ports": '{"dir": "/x", "user": "u", "munged_pid": 1, '
    '"clusters": [{"center_id": "zhongwei"}]}',
    "not UTF-8": b"\xff\xfe{".decode("latin-1"),
}


@pytest.mark.parametrize("command", ["status", "down"])
@pytest.mark.parametrize("content", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_state_file_is_named_not_a_traceback(
    invoke: Any, tmp_path: Path, command: str, content: str
) -> None:
    (tmp_path / "testbed.json").write_bytes(content.encode("latin-1"))
    code, out, err = invoke("testbed", command, "--dir", str(tmp_path))
    assert code == 2, (out, err)  # the command's refusal (an uncaught exception gives 1)
    assert "Traceback" not in out + err
    assert f"{tmp_path / 'testbed.json'} is not a testbed's state file" in err, err


@pytest.mark.parametrize("command", ["status", "down"])
def test_no_testbed_says_where_it_looked(invoke: Any, tmp_path: Path, command: str) -> None:
    code, _, err = invoke("testbed", command, "--dir", str(tmp_path))
    assert code == 2
    assert f"no testbed in {tmp_path}" in err and "is missing" in err, err
