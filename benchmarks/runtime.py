"""Run facts per backend: the settings that decide a timing, recorded beside the results.

``track_facts_recorded`` appends the text facts (versions, BLAS, device, driver) to the facts file (see
``benchmarks/harness/facts.py``) and returns how many it wrote; the other two are the numeric settings,
so a change of threads or of float32 matmul precision shows in the history next to the timings.  The
device's ceilings (copy bandwidth, matrix-product rate, last-level cache) are measured here in every run,
so that an op claiming more than its device can do is flagged (``benchmarks/harness/peaks.py``).
"""

from __future__ import annotations

import os

from benchmarks.harness import facts, peaks
from benchmarks.harness.backends import require_backend, selected_backend_names
from benchmarks.harness.frameworks import torch


class Runtime:
    params = [selected_backend_names()]
    param_names = ["backend"]

    def setup(self, backend: str) -> None:
        self.backend = require_backend(backend)

    def track_facts_recorded(self, backend: str) -> int:
        recorded = facts.collect(self.backend)
        facts.record(recorded, facts.facts_path())
        return len(recorded)

    track_facts_recorded.unit = "facts"

    def track_threads(self, backend: str) -> float:
        if self.backend.framework == "torch":
            return float(torch.get_num_threads())
        return float("nan")  # MLX has no thread-count setting to report

    track_threads.unit = "threads"

    def track_float32_matmul_tf32(self, backend: str) -> float:
        if self.backend.framework == "torch":
            return float(torch.backends.cuda.matmul.allow_tf32)
        return float(os.environ.get("MLX_ENABLE_TF32") == "1")

    track_float32_matmul_tf32.unit = "1 = TF32"

    def track_peak_bandwidth(self, backend: str) -> float:
        return peaks.copy_bandwidth(self.backend) / 1e9

    track_peak_bandwidth.unit = "GB/s"

    def track_peak_matmul(self, backend: str) -> float:
        return peaks.matmul_rate(self.backend) / 1e9

    track_peak_matmul.unit = "GFLOP/s"

    def track_cache_bytes(self, backend: str) -> float:
        return float(peaks.last_level_cache_bytes(self.backend))

    track_cache_bytes.unit = "bytes"
