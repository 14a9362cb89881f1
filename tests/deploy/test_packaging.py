"""The container build file and the compose file (deploy/) say what this version does.

No container runtime runs on the project's machines (and no registry is reachable), so the
image is not built here. What can drift without one is checked: every command the compose
file runs parses with this version's CLI (its options exist and take those values), the
platform and agent files it mounts load, and the build file copies what the repository has
and installs with the lock, as `make setup` does.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from suanwang.cli.main import app
from suanwang.server.platform_config import load_agent_config, load_platform_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"
BUILD = ROOT / "deploy" / "container" / "Containerfile"


def parse(args: list[str]) -> Any:
    """The context the CLI would run ``suanwang ARGS`` in (raises on what it would refuse)."""
    ctx = typer.main.get_command(app).make_context("suanwang", list(args))
    while hasattr(ctx.command, "resolve_command"):  # a group: go down to its subcommand
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:
            break
        name, sub, rest = ctx.command.resolve_command(ctx, rest)
        ctx = sub.make_context(name, rest, parent=ctx)
    return ctx


def commands() -> dict[str, list[str]]:
    """Each service's ``suanwang`` command line (its command, or the one in its shell line)."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    out: dict[str, list[str]] = {}
    for name, svc in services.items():
        entry = svc.get("entrypoint")
        if entry and entry[:2] == ["sh", "-c"]:
            line = entry[2].replace("$$c", "qingyang")
            call = re.search(r"suanwang ([^>;|]+)", line)
            assert call, f"{name}: no suanwang command in {entry}"
            out[name] = call.group(1).split()
        elif "command" in svc:
            out[name] = list(svc["command"])
    return out


def test_the_parser_refuses_what_the_cli_refuses() -> None:
    """The check below can fail: an unknown option, a bad value."""
    assert parse(["serve", "--port", "8000"]).params["port"] == 8000
    with pytest.raises(Exception, match="No such option"):
        parse(["serve", "--no-such-option"])
    with pytest.raises(Exception, match="valid integer"):
        parse(["serve", "--port", "eighty"])


def test_every_compose_command_parses_with_this_cli() -> None:
    found = commands()
    assert {"api", "worker", "agent-tokens", "agent-qingyang", "agent-zhongwei", "cli"} <= set(
        found
    )
    for name, args in found.items():
        words = next((args[:i] for i, a in enumerate(args) if a.startswith("-")), args)
        assert parse(args).info_name == words[-1], (name, args)  # down to the subcommand
    assert parse(found["api"]).params["services"] is False  # the workers run the services


def test_the_files_the_compose_file_mounts_load() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    mounted: dict[str, Path] = {}
    for svc in services.values():
        for vol in svc.get("volumes", []):
            src, dst, *_ = vol.split(":")
            if src.startswith("./"):
                mounted[dst] = COMPOSE.parent / src
    platform = load_platform_config(mounted["/etc/suanwang/platform.yaml"])
    centers = {c.center_id for c in platform.centers}
    assert centers == {"qingyang", "zhongwei"}
    agents = [args for name, args in commands().items() if name.startswith("agent-")]
    served = {args[args.index("--center") + 1] for args in agents if args[1] != "token"}
    assert served == {c.center_id for c in platform.centers if c.executor.type == "agent"}
    load_agent_config(mounted["/etc/suanwang/agent.yaml"])
    for name, args in commands().items():  # every file a command names is mounted
        for opt in ("--config",):
            if opt in args:
                assert args[args.index(opt) + 1] in mounted, name


def test_the_build_file_copies_what_is_there_and_installs_with_the_lock() -> None:
    text = BUILD.read_text()
    copies = re.findall(r"^COPY (.+) \S+$", text, flags=re.MULTILINE)
    assert copies
    for sources in copies:
        for src in sources.split():
            assert (ROOT / src).exists(), src
    installs = [line for line in text.splitlines() if "pip install" in line]
    assert installs and all("-c constraints.txt" in line for line in installs)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entry = re.search(r'^ENTRYPOINT \["(\w+)"\]$', text, flags=re.MULTILINE)
    assert entry is not None and entry.group(1) in scripts


def test_the_installed_package_has_every_file_the_source_tree_has(tmp_path: Path) -> None:
    """The image installs the package (not an editable checkout): its wheel must carry every
    file under src/suanwang (scenarios, migrations, the console's static files, ...)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("suanwang-*.whl")
    with zipfile.ZipFile(wheel) as z:
        shipped = {n for n in z.namelist() if n.startswith("suanwang/")}
    src = ROOT / "src"
    tree = {
        p.relative_to(src).as_posix()
        for p in (src / "suanwang").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert tree - shipped == set()
