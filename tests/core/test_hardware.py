"""The accelerator catalog and the standard compute unit (SCU)."""

from __future__ import annotations

import pytest

from suanwang.core.hardware import (
    REFERENCE_MODEL,
    Accelerator,
    Catalog,
    Precision,
    speed_scu_per_hour,
)
from suanwang.core.scenario import Scenario

GPU_PRECISIONS = (Precision.FP16, Precision.FP32, Precision.FP64)


@pytest.fixture(scope="module")
def catalog(china: Scenario) -> Catalog:
    return china.catalog


def test_reference_card_is_one_scu_per_hour(catalog: Catalog) -> None:
    a100 = catalog.get(REFERENCE_MODEL)
    assert REFERENCE_MODEL == "a100"
    assert speed_scu_per_hour(a100, Precision.FP16) == pytest.approx(1.0, abs=1e-12)
    # the A100 also defines the FP32 and FP64 units (19.5 TFLOP/s)
    assert speed_scu_per_hour(a100, Precision.FP32) == pytest.approx(1.0, abs=1e-12)
    assert speed_scu_per_hour(a100, Precision.FP64) == pytest.approx(1.0, abs=1e-12)


def test_h100_is_faster_than_a100(catalog: Catalog) -> None:
    a100, h100 = catalog.get("a100"), catalog.get("h100")
    for prec in GPU_PRECISIONS:
        assert speed_scu_per_hour(h100, prec) > speed_scu_per_hour(a100, prec)
    # datasheet ratio: 989 / 312 dense FP16
    assert speed_scu_per_hour(h100, Precision.FP16) == pytest.approx(989 / 312, rel=1e-9)


def test_speed_is_peak_ratio_times_efficiency(catalog: Catalog) -> None:
    ref = {Precision.FP16: 312.0, Precision.FP32: 19.5, Precision.FP64: 19.5}
    for acc in catalog.accelerators:
        if acc.is_cpu:
            continue
        for prec in GPU_PRECISIONS:
            expected = acc.peak_tflops(prec) / ref[prec] * acc.efficiency
            assert speed_scu_per_hour(acc, prec) == pytest.approx(expected, rel=1e-12)


def test_chips_without_fp64_cannot_run_fp64(catalog: Catalog) -> None:
    ascend = catalog.get("ascend-910b")
    assert ascend.stack == "cann"
    if ascend.fp64_tflops == 0:
        assert speed_scu_per_hour(ascend, Precision.FP64) == 0.0
    assert speed_scu_per_hour(ascend, Precision.FP16) > 0
    for acc in catalog.accelerators:
        if not acc.is_cpu and acc.fp64_tflops == 0:
            assert speed_scu_per_hour(acc, Precision.FP64) == 0.0, acc.model


def test_cpu_node_runs_only_cpu_work(catalog: Catalog) -> None:
    cpu = catalog.get("cpu-node")
    assert cpu.is_cpu
    assert speed_scu_per_hour(cpu, Precision.CPU) > 0
    for prec in GPU_PRECISIONS:
        assert speed_scu_per_hour(cpu, prec) == 0.0
    # per core: node FP64 / cores / 19.5 TFLOP/s
    expected = cpu.fp64_tflops / cpu.cores / 19.5 * cpu.efficiency
    assert speed_scu_per_hour(cpu, Precision.CPU) == pytest.approx(expected, rel=1e-12)
    # and no accelerator card runs CPU work
    for acc in catalog.accelerators:
        if not acc.is_cpu:
            assert speed_scu_per_hour(acc, Precision.CPU) == 0.0, acc.model


def test_unit_power(catalog: Catalog) -> None:
    cpu = catalog.get("cpu-node")
    assert cpu.unit_power_w() == pytest.approx(cpu.power_w / cpu.cores)
    a100 = catalog.get("a100")
    assert a100.unit_power_w() == pytest.approx(a100.power_w + a100.host_w)


def test_catalog_lookup_and_duplicates(catalog: Catalog) -> None:
    assert "a100" in catalog
    assert "no-such-chip" not in catalog
    assert {"cuda", "cann", "dtk", "neuware", "cpu"} <= catalog.stacks
    with pytest.raises(KeyError):
        catalog.get("no-such-chip")
    a = catalog.get("a100")
    with pytest.raises(ValueError, match="duplicate"):
        Catalog((a, a))


def test_efficiency_scales_speed() -> None:
    acc = Accelerator(
        model="x",
        name="x",
        vendor="v",
        stack="cuda",
        fp64_tflops=19.5,
        fp32_tflops=39.0,
        fp16_tflops=624.0,
        int8_tops=0,
        memory_gb=1,
        bandwidth_tbps=1,
        power_w=100,
        host_w=0,
        source="",
        efficiency=0.5,
    )
    assert speed_scu_per_hour(acc, Precision.FP16) == pytest.approx(1.0)
    assert speed_scu_per_hour(acc, Precision.FP32) == pytest.approx(1.0)
    assert speed_scu_per_hour(acc, Precision.FP64) == pytest.approx(0.5)
