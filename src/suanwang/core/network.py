"""The compiled network: centers, capacity pools, places and the links between them.

A *pool* is the capacity of one accelerator model at one center (cards), or a center's CPU
cores. A job holds units of exactly one pool while it runs. Arrays are indexed by pool, center
or place so that the placement engine can evaluate every center at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from suanwang.core.geo import great_circle_matrix_km
from suanwang.core.hardware import Precision, speed_scu_per_hour
from suanwang.core.jobs import ANY_ACCELERATOR, Job
from suanwang.core.scenario import Scenario

PRECISIONS = (Precision.FP16, Precision.FP32, Precision.FP64, Precision.CPU)
PRECISION_INDEX = {p: i for i, p in enumerate(PRECISIONS)}


class UnknownName(ValueError):
    """A job or file names an origin, accelerator or stack the scenario does not know."""


@dataclass(frozen=True, slots=True)
class JobClassInfo:
    """What the engine needs about a job, cached by the job's feasibility-relevant fields.

    ``pools`` lists feasible pools nearest first; the other arrays are aligned with it.
    ``pool_list``, ``latency_list`` and ``transfer_cost_list`` are the same numbers as Python
    ints and floats (made once per class): a host or policy reading single elements for every
    job (the simulator, ``nearest``) reads them without a numpy scalar each.
    """

    pools: NDArray[np.int64]
    centers: NDArray[np.int64]
    latency_ms: NDArray[np.float64]
    speed: NDArray[np.float64]  # SCU per unit-hour on that pool
    facility_kw_per_unit: NDArray[np.float64]  # IT kW per unit x PUE
    transfer_cost_cny_per_gb: NDArray[np.float64]
    transfer_s_per_gb: NDArray[np.float64]
    pool_list: tuple[int, ...] = field(init=False, repr=False, compare=False)
    latency_list: tuple[float, ...] = field(init=False, repr=False, compare=False)
    transfer_cost_list: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        put = object.__setattr__  # (frozen: derived fields set once, here)
        put(self, "pool_list", tuple(self.pools.tolist()))
        put(self, "latency_list", tuple(self.latency_ms.tolist()))
        put(self, "transfer_cost_list", tuple(self.transfer_cost_cny_per_gb.tolist()))

    def subset(self, keep: NDArray[np.bool_]) -> JobClassInfo:
        """The same job with only the feasible pools ``keep`` selects (order kept).

        The same selection of the same class gives the same object while kept (up to
        :data:`SUBSETS_KEPT`, then all are dropped): the platform's queue cuts each start's
        class to the pools with room, which stay the same for many starts in a row, and the
        planner keeps its rows of a class by identity."""
        if keep.all():
            return self
        key = (id(self), keep.tobytes())
        got = _SUBSETS.get(key)
        if got is not None and got[0] is self:
            return got[1]
        made = JobClassInfo(
            pools=self.pools[keep],
            centers=self.centers[keep],
            latency_ms=self.latency_ms[keep],
            speed=self.speed[keep],
            facility_kw_per_unit=self.facility_kw_per_unit[keep],
            transfer_cost_cny_per_gb=self.transfer_cost_cny_per_gb[keep],
            transfer_s_per_gb=self.transfer_s_per_gb[keep],
        )
        if len(_SUBSETS) >= SUBSETS_KEPT:
            _SUBSETS.clear()  # (one call: safe with threads, unlike taking out the oldest)
        _SUBSETS[key] = (self, made)
        return made


#: subsets of classes kept for reuse (:meth:`JobClassInfo.subset`): each holds its class, so
#: the ``id`` in its key stays that class's while kept (a few MB at most)
SUBSETS_KEPT = 1024
_SUBSETS: dict[tuple[int, bytes], tuple[JobClassInfo, JobClassInfo]] = {}


class Network:
    """Immutable compiled view of a :class:`Scenario`."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        sc = scenario
        self.center_ids: tuple[str, ...] = tuple(c.id for c in sc.centers)
        self.center_index = {cid: i for i, cid in enumerate(self.center_ids)}
        prov_region = {p.id: p.grid_region for p in sc.provinces}
        regions = sorted({p.grid_region for p in sc.provinces})
        self.regions = tuple(regions)
        region_index = {r: i for i, r in enumerate(regions)}
        hubs = [h.id for h in sc.hubs]
        self.hub_ids = tuple(hubs)

        self.center_pue = np.array([c.pue for c in sc.centers], dtype=np.float64)
        self.center_region = np.array(
            [region_index[prov_region[c.province]] for c in sc.centers], dtype=np.int64
        )
        self.center_hub = np.array(
            [hubs.index(c.hub) if c.hub in hubs else -1 for c in sc.centers], dtype=np.int64
        )
        self.center_egress_gbps = np.array([c.egress_gbps for c in sc.centers], dtype=np.float64)
        c_lat = np.array([c.lat for c in sc.centers], dtype=np.float64)
        c_lon = np.array([c.lon for c in sc.centers], dtype=np.float64)

        # Pools.
        cpu_models = [a for a in sc.catalog.accelerators if a.is_cpu]
        pool_center: list[int] = []
        pool_model: list[str] = []
        pool_cap: list[int] = []
        for ci, c in enumerate(sc.centers):
            for model, n in c.inventory:
                if n > 0:
                    pool_center.append(ci)
                    pool_model.append(model)
                    pool_cap.append(n)
            if c.cpu_cores > 0 and cpu_models:
                pool_center.append(ci)
                pool_model.append(cpu_models[0].model)
                pool_cap.append(c.cpu_cores)
        self.pool_center = np.array(pool_center, dtype=np.int64)
        self.pool_model: tuple[str, ...] = tuple(pool_model)
        self.pool_capacity = np.array(pool_cap, dtype=np.int64)
        accs = [sc.catalog.get(m) for m in pool_model]
        self.pool_stack: tuple[str, ...] = tuple(a.stack for a in accs)
        self.pool_is_cpu = np.array([a.is_cpu for a in accs], dtype=bool)
        self.pool_unit_kw = np.array([a.unit_power_w() / 1000.0 for a in accs], dtype=np.float64)
        self.pool_speed = np.array(
            [[speed_scu_per_hour(a, p) for p in PRECISIONS] for a in accs], dtype=np.float64
        ).reshape(len(accs), len(PRECISIONS))
        self.pool_facility_kw = self.pool_unit_kw * self.center_pue[self.pool_center]

        # Places (job origins): provinces by capital, then cities.
        places: list[tuple[str, float, float, str]] = [
            (p.id, p.lat, p.lon, p.grid_region) for p in sc.provinces
        ]
        places += [(c.id, c.lat, c.lon, prov_region[c.province]) for c in sc.cities]
        self.place_ids: tuple[str, ...] = tuple(p[0] for p in places)
        self.place_index = {pid: i for i, pid in enumerate(self.place_ids)}
        p_lat = np.array([p[1] for p in places], dtype=np.float64)
        p_lon = np.array([p[2] for p in places], dtype=np.float64)
        p_region = np.array([region_index[p[3]] for p in places], dtype=np.int64)
        self.place_region = p_region

        net = sc.network
        km = great_circle_matrix_km(p_lat, p_lon, c_lat, c_lon)
        self.latency_ms = net.base_latency_ms + km * net.fibre_route_factor / net.fibre_km_per_ms
        same = p_region[:, None] == self.center_region[None, :]
        self.transfer_cost_cny_per_gb = np.where(
            same,
            net.same_region.transfer_cost_cny_per_gb,
            net.cross_region.transfer_cost_cny_per_gb,
        )
        bw = np.where(same, net.same_region.bandwidth_gbps, net.cross_region.bandwidth_gbps)
        self.bandwidth_gbps = np.minimum(bw, self.center_egress_gbps[None, :])
        # seconds to move one GB (8 Gbit) at the link's bandwidth
        self.transfer_s_per_gb = 8.0 / self.bandwidth_gbps
        # center -> center links, seen from the place each center stands in (city or province)
        center_place = np.array(
            [self.place_index.get(c.city, self.place_index[c.province]) for c in sc.centers],
            dtype=np.int64,
        )
        self.center_transfer_cost_cny_per_gb = self.transfer_cost_cny_per_gb[center_place]
        self.center_transfer_s_per_gb = self.transfer_s_per_gb[center_place]
        named = zip(pool_center, pool_model, strict=True)
        self._pool_named = {(self.center_ids[c], m): p for p, (c, m) in enumerate(named)}
        self._cpu_pool: dict[str, int] = {}
        for p in np.flatnonzero(self.pool_is_cpu).tolist():
            self._cpu_pool.setdefault(self.center_ids[pool_center[p]], p)
        self._class_cache: dict[tuple[object, ...], JobClassInfo] = {}
        # the same classes by the job's own fields (no property calls: read for every job)
        self._field_cache: dict[tuple[object, ...], JobClassInfo] = {}
        self.known_stacks = frozenset(self.pool_stack) | sc.catalog.stacks
        self.known_models = frozenset(sc.catalog.models)

    @property
    def n_pools(self) -> int:
        return len(self.pool_model)

    @property
    def n_centers(self) -> int:
        return len(self.center_ids)

    def pool_named(self, center_id: str, model: str) -> int | None:
        """The pool of ``model`` at ``center_id`` (None: no such pool in this scenario)."""
        return self._pool_named.get((center_id, model))

    def pool_of_run(self, center_id: str, model: str, cpu_only: bool) -> int | None:
        """The pool a stored run holds: its center and model, or for CPU-only work the
        center's CPU pool whatever model was recorded."""
        pool = self._pool_named.get((center_id, model))
        if pool is None and cpu_only:
            pool = self._cpu_pool.get(center_id)
        return pool

    def place(self, origin: str) -> int:
        try:
            return self.place_index[origin]
        except KeyError:
            raise UnknownName(f"unknown origin {origin!r}") from None

    def check_job(self, job: Job) -> None:
        """Raise :class:`UnknownName` naming whatever the job refers to that does not exist."""
        self.place(job.origin)
        if job.accelerator != ANY_ACCELERATOR and job.accelerator not in self.known_models:
            raise UnknownName(f"unknown accelerator {job.accelerator!r}")
        unknown = sorted(s for s in job.stacks if s not in self.known_stacks)
        if unknown:
            raise UnknownName(f"unknown software stack(s) {', '.join(map(repr, unknown))}")

    def job_class(self, job: Job) -> JobClassInfo:
        """Feasible pools for a job (compatibility, latency and size as hard constraints)."""
        # The job's fields that its class key is made of (precision: kind and cards; latency:
        # latency_ms and kind; units: cards and cpus), read as they are: a finer key of the
        # same classes, looked up first (the class key's properties cost more than the rest).
        fields = (job.kind, job.cards, job.cpus, job.accelerator, job.stacks, job.origin,
                  job.latency_ms)  # fmt: skip
        info = self._field_cache.get(fields)
        if info is None:
            info = self._field_cache[fields] = self._job_class(job)
        return info

    def _job_class(self, job: Job) -> JobClassInfo:
        key = (
            job.precision,
            job.accelerator,
            job.stacks,
            job.origin,
            job.effective_latency_ms,
            job.demand_units,
        )
        info = self._class_cache.get(key)
        if info is None:
            info = self._build_class(job)
            self._class_cache[key] = info
        return info

    def exclusions(self, job: Job) -> dict[str, int]:
        """Why pools are not feasible for ``job``: pools excluded by each hard constraint, in
        the order they are checked (a pool counts for the first constraint it fails).

        Keys: ``accelerator`` (another model, or a chip that cannot run the job's precision),
        ``software stack``, ``size`` (fewer units than the job holds), ``latency``. Raises
        :class:`UnknownName` for an unknown origin.
        """
        origin = self.place(job.origin)
        left = np.ones(self.n_pools, dtype=bool)
        out: dict[str, int] = {}

        def drop(name: str, ok: NDArray[np.bool_]) -> None:
            out[name] = int((left & ~ok).sum())
            left[:] &= ok

        speed_ok = self.pool_speed[:, PRECISION_INDEX[job.precision]] > 0
        if job.precision is not Precision.CPU and job.accelerator != ANY_ACCELERATOR:
            speed_ok &= np.array([m == job.accelerator for m in self.pool_model], dtype=bool)
        drop("accelerator", speed_ok)
        if job.precision is not Precision.CPU:
            drop("software stack", np.array([s in job.stacks for s in self.pool_stack]))
        else:
            out["software stack"] = 0
        drop("size", self.pool_capacity >= job.demand_units)
        bound = job.effective_latency_ms
        lat = self.latency_ms[origin, self.pool_center]
        drop("latency", lat <= bound if bound is not None else np.ones_like(left))
        return out

    def _build_class(self, job: Job) -> JobClassInfo:
        origin = self.place(job.origin)
        prec = PRECISION_INDEX[job.precision]
        speed = self.pool_speed[:, prec]
        ok = speed > 0
        if job.precision is not Precision.CPU:
            ok &= np.array([s in job.stacks for s in self.pool_stack], dtype=bool)
            if job.accelerator != ANY_ACCELERATOR:
                ok &= np.array([m == job.accelerator for m in self.pool_model], dtype=bool)
        ok &= self.pool_capacity >= job.demand_units
        lat = self.latency_ms[origin, self.pool_center]
        bound = job.effective_latency_ms
        if bound is not None:
            ok &= lat <= bound
        idx = np.flatnonzero(ok)
        idx = idx[np.lexsort((idx, lat[idx]))]
        centers = self.pool_center[idx]
        return JobClassInfo(
            pools=idx.astype(np.int64),
            centers=centers,
            latency_ms=lat[idx],
            speed=speed[idx],
            facility_kw_per_unit=self.pool_facility_kw[idx],
            transfer_cost_cny_per_gb=self.transfer_cost_cny_per_gb[origin, centers],
            transfer_s_per_gb=self.transfer_s_per_gb[origin, centers],
        )
