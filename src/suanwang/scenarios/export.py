"""Write a scenario in the on-disk format: ``scenario.yaml`` plus ``signals/<center>.csv``."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path

import yaml

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
            w = csv.writer(fh)
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
