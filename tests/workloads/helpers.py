"""Running a workload's asv class in this process, the way asv does through its measuring process."""

from __future__ import annotations

import dataclasses
from typing import Any

from benchmarks.harness.jobs import combo_key, measure_job

# two samples per timing: the tests check the mechanism, not the figures
TEST_SAMPLES = (2, 2, 0.0)


def run_job_class(cls: type, *params: Any) -> dict[str, Any]:
    """Measure one parameter set of a job class in this process, hand the figures to the class as asv's
    setup_cache would, and return every metric method's result by name.  A skip raises
    ``NotImplementedError`` with its reason, as the class's setup does under asv."""
    spec = dataclasses.replace(cls.spec, samples=TEST_SAMPLES)
    figures = {combo_key(params): measure_job(spec, params)}
    bench = cls()
    bench.setup(figures, *params)
    return {name: getattr(bench, name)(figures, *params) for name in dir(bench) if name.startswith("track_")}
