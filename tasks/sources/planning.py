"""Parallel input hashing for planning: fingerprint many input files at once, in input order.

Why: planning fingerprints every local input (sha256 of the whole file, about 1 GB/s on one core), one at
a time on the driver: about 3 h for 10 TB on a first run. The files are independent, so they are hashed
by a `Mapper`:

- `ThreadMap(n)` (the default): a pool of n threads on the driver. Reading and sha256 both release the
  GIL, so n threads hash n files at a time (as fast as the disks allow);
- `RayMap(run)`: one Ray task per batch of files, spread over the cluster's nodes (where the data is on
  shared storage, as the unit tasks read it anyway), when the run uses Ray with a cluster address.

`planner_map(run)` chooses from the run spec. A mapper keeps the order of its inputs, and a file that
cannot be hashed comes back as its exception (not raised), so the results are exactly the serial ones:
`tasks.sources.core.with_content` then treats a failure as before (that unit fingerprints and fails on
its own). Remembered fingerprints (`cached_content_fingerprint`) still make an unchanged rerun hash nothing.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tasks.common.io import cached_content_fingerprint

if TYPE_CHECKING:
    from data_specs import RunSpec

# A mapper: apply fn to every url, results in the urls' order.
Mapper = Callable[[Callable[[str], object], Sequence[str]], list]

RAY_TASKS_PER_CPU = 4  # batches per cluster CPU: big enough to amortise a task, small enough to balance


def serial_map(fn: Callable[[str], object], urls: Sequence[str]) -> list:
    """One at a time, in this thread (what planning did before)."""
    return [fn(url) for url in urls]


@dataclass(frozen=True)
class ThreadMap:
    """A mapper over a pool of `workers` threads (one item, or one worker: no pool at all)."""

    workers: int

    def __call__(self, fn: Callable[[str], object], urls: Sequence[str]) -> list:
        if len(urls) <= 1 or self.workers <= 1:
            return serial_map(fn, urls)
        with ThreadPoolExecutor(max_workers=min(self.workers, len(urls)), thread_name_prefix="lmpipe-hash") as pool:
            return list(pool.map(fn, urls))


@dataclass(frozen=True)
class RayMap:
    """A mapper running batches of urls as Ray tasks: on the Ray this process is connected to, else (with
    `run`) on the cluster `flows.runners.ray_session(run)` connects to for the call."""

    run: RunSpec | None = None

    def __call__(self, fn: Callable[[str], object], urls: Sequence[str]) -> list:
        if len(urls) <= 1:
            return serial_map(fn, urls)
        if self.run is None or _ray_connected():
            return _on_ray(fn, urls)
        from flows.runners import ray_session

        with ray_session(self.run):  # connects, and disconnects after
            return _on_ray(fn, urls)


def _on_ray(fn: Callable[[str], object], urls: Sequence[str]) -> list:
    import ray

    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    size = max(1, math.ceil(len(urls) / (cpus * RAY_TASKS_PER_CPU)))
    remote = ray.remote(num_cpus=1)(serial_map)
    refs = [remote.remote(fn, list(urls[i : i + size])) for i in range(0, len(urls), size)]
    return [result for batch in ray.get(refs) for result in batch]


def fingerprint_or_error(url: str) -> str | BaseException:
    """`cached_content_fingerprint(url)`, or the exception it raised (returned, so one bad file stops nothing)."""
    try:
        return cached_content_fingerprint(url)
    except Exception as exc:  # noqa: BLE001 - handed back; the unit that reads the file reports it
        return exc


def hash_inputs(urls: Sequence[str], mapper: Mapper) -> dict[str, str | BaseException]:
    """Every distinct url's fingerprint (or the exception), hashed through `mapper`."""
    distinct = list(dict.fromkeys(urls))
    return dict(zip(distinct, mapper(fingerprint_or_error, distinct), strict=True))


def default_workers() -> int:
    """Threads when nothing says otherwise: the cores, at least 4 (hashing waits on disks as much as on CPUs)."""
    return max(4, os.cpu_count() or 1)


def planner_map(run: RunSpec | None) -> Mapper:
    """How planning hashes inputs for this run: Ray tasks when the task runner is Ray and a cluster is given
    (`RAY_ADDRESS`, `run.ray_address`, or a Ray this process is already connected to); else threads, as many
    as `run.workers` or the cores (nothing else runs while planning). A local Ray started for the units would
    only share this machine's cores, so it gets threads too."""
    if run is None:
        return ThreadMap(default_workers())
    from flows.runners import chosen_runner

    if chosen_runner(run) == "ray" and (os.environ.get("RAY_ADDRESS") or run.ray_address or _ray_connected()):
        return RayMap(run)
    return ThreadMap(max(run.workers, default_workers()))


def _ray_connected() -> bool:
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a dependency
        return False
    return ray.is_initialized()
