"""Write a scenario in the on-disk format: ``scenario.yaml`` plus ``signals/<center>.csv``."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import yaml

from suanwang.core import csvcells
from suanwang.scenarios.loader import SIGNAL_HEADER, builtin_catalog_specs, builtin_text
from suanwang.scenarios.signals import build_signals


def export_builtin(name: str, out_dir: Path, start: datetime, hours: int, seed: int) -> list[Path]:
    """Export built-in scenario ``name`` with ``hours`` of modelled signals from ``start``.

    The YAML keeps the built-in file's comments and sources and gains the accelerator catalog,
    so the directory is self-contained. Returns the files written.
    """
    from suanwang.scenarios.loader import load_scenario

    scenario = load_scenario(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    catalog = {"accelerators": [a.model_dump() for a in builtin_catalog_specs()]}
    text = builtin_text(name).rstrip("\n") + "\n\n# accelerator catalog (built-in)\n"
    text += yaml.safe_dump(catalog, allow_unicode=True, sort_keys=False)
    written = [out_dir / "scenario.yaml"]
    written[0].write_text(text, encoding="utf-8")
    signals = build_signals(scenario, start, hours, seed)
    sig_dir = out_dir / "signals"
    sig_dir.mkdir(exist_ok=True)
    for ci, center in enumerate(scenario.centers):
        path = sig_dir / f"{center.id}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csvcells.writer(fh)
            w.writerow(SIGNAL_HEADER)
            for h in range(signals.hours):
                t = signals.start + timedelta(hours=h)
                w.writerow(
                    [
                        t.isoformat().replace("+00:00", "Z"),
                        f"{signals.price_cny_per_kwh[ci, h]:.5f}",
                        f"{signals.carbon_g_per_kwh[ci, h]:.2f}",
                        f"{signals.green_fraction[ci, h]:.5f}",
                    ]
                )
        written.append(path)
    return written


def write_scaled(name: str, out_dir: Path, capacity_scale: float) -> Path:
    """Write built-in scenario ``name`` with every center's cards (per model) and CPU cores
    times ``capacity_scale``, rounded as the what-if's ``capacity_scale`` rounds them, as
    ``out_dir/scenario.yaml`` (its signals modelled, as the built-in's are). Returns the file.

    A directory a server can serve (``--scenario DIR``): a scarce copy of the network, e.g. the
    demo's, whose local executors offer what its centers have.
    """
    if not capacity_scale > 0:
        raise ValueError(f"capacity_scale must be > 0, not {capacity_scale}")
    data = yaml.safe_load(builtin_text(name))
    for center in data["centers"]:
        inventory = center.get("inventory") or {}
        center["inventory"] = {m: round(n * capacity_scale) for m, n in inventory.items()}
        center["cpu_cores"] = round(center.get("cpu_cores", 0) * capacity_scale)
    data["name"] = f"{name} x{capacity_scale:g}"
    data["description"] = (
        f"The built-in scenario {name!r} with every center's cards and CPU cores x "
        f"{capacity_scale:g}. " + str(data.get("description", ""))
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "scenario.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path
