"""Clocks for the benchmark: a per-batch timer callback, a peak-memory sampler, medians and
ratio intervals."""

from __future__ import annotations

import math
import os
import resource
import statistics
import threading
import time
from collections.abc import Sequence
from typing import Any

import lightning as L

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class BatchTimer(L.Callback):
    """Times the batches after ``warmup`` (data fetch, step, logging, progress bar included).

    The clock starts when warm-up batch ``warmup`` ends and stops when the last batch ends, so
    it covers everything the loop does per batch in steady state. ``fit_s`` is the whole
    ``trainer.fit`` (setup, checkpointing and teardown included).
    """

    def __init__(self, warmup: int = 1) -> None:
        self.warmup = int(warmup)
        self.reset()

    def reset(self) -> None:
        self.start: float | None = None
        self.end: float | None = None
        self.cpu_start = self.cpu_end = 0.0
        self.timed_batches = 0
        self.timed_images = 0
        self.fit_s: float | None = None

    def _batch_end(self, batch: Any, batch_idx: int) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        if batch_idx + 1 == self.warmup:
            self.start, self.cpu_start = now, cpu
        elif batch_idx + 1 > self.warmup:
            self.end, self.cpu_end = now, cpu
            self.timed_batches += 1
            self.timed_images += int(batch[1].shape[0])

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.reset()
        self._fit_started = time.perf_counter()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fit_s = time.perf_counter() - self._fit_started

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.reset()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self._batch_end(batch, batch_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):  # noqa: ANN001
        self._batch_end(batch, batch_idx)

    @property
    def seconds(self) -> float:
        """Seconds of the timed batches."""
        if self.start is None or self.end is None:
            raise RuntimeError("no batch after the warm-up was timed; raise the batch limit")
        return self.end - self.start

    @property
    def images_per_s(self) -> float:
        return self.timed_images / self.seconds

    @property
    def cpu_ms_per_image(self) -> float:
        """Process CPU time (all threads) per timed image: less sensitive than wall time to
        other processes on a shared machine."""
        return 1000 * (self.cpu_end - self.cpu_start) / max(1, self.timed_images)


def rss_bytes() -> int:
    """Resident memory of this process now (Linux ``/proc``; else the peak so far)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except OSError:
        return max_rss_bytes()


def max_rss_bytes() -> int:
    """Peak resident memory of this process since it started (``getrusage``)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class PeakRSS:
    """Context manager sampling resident memory in a thread: ``peak_mb`` and ``delta_mb``
    (the peak above the resident memory at entry)."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.baseline = 0
        self.peak = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> PeakRSS:
        self.baseline = self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20

    @property
    def delta_mb(self) -> float:
        return (self.peak - self.baseline) / 2**20


def median(values: Sequence[float]) -> float:
    """The median (NaN for no values)."""
    return float(statistics.median(values)) if values else float("nan")


def ratio_interval(ratios: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """Per-repeat ratios (paired repeats: each ratio of two measurements taken side by side)
    summarised on the log scale: their geometric mean and its t interval, so a speed-up and
    its inverse get mirrored intervals. ``ci_low``/``ci_high`` are None under two repeats."""
    values = [float(r) for r in ratios if r and math.isfinite(r) and r > 0]
    if not values:
        return {"n": 0, "geomean": None, "ci_low": None, "ci_high": None}
    logs = [math.log(v) for v in values]
    centre = statistics.fmean(logs)
    if len(logs) < 2:
        return {"n": 1, "geomean": math.exp(centre), "ci_low": None, "ci_high": None}
    from scipy import stats  # here: scipy.stats costs start-up time the CLI need not pay

    half = stats.t.ppf(0.5 + confidence / 2, len(logs) - 1) * statistics.stdev(logs)
    half /= math.sqrt(len(logs))
    return {
        "n": len(logs),
        "geomean": math.exp(centre),
        "ci_low": math.exp(centre - half),
        "ci_high": math.exp(centre + half),
    }
