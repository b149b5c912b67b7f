"""GPU state findings and the over-ceiling flag, on crafted figures (no GPU needed)."""

from __future__ import annotations

import datetime

from benchmarks.harness import clocks, peaks
from benchmarks.harness.peaks import Ceilings, over_peak

STEADY = {"sm_clock_mhz": 1980, "sm_clock_max_mhz": 1980, "temperature_c": 40, "slowdown": []}


def test_steady_clocks_say_nothing():
    assert clocks.assess(STEADY, STEADY) == []
    assert clocks.assess(None, None) == []


def test_low_clock_slowdown_and_heating_are_named():
    after = {**STEADY, "sm_clock_mhz": 1500, "temperature_c": 55, "slowdown": ["hardware thermal slowdown"]}
    found = clocks.assess(STEADY, after)
    assert any("SM clock 1500 MHz" in f and "24% under" in f for f in found)
    assert "the driver reported hardware thermal slowdown" in found
    assert any("rose 15 C" in f for f in found)
    # 9% under the maximum is within the allowance
    assert clocks.assess(STEADY, {**STEADY, "sm_clock_mhz": 1802}) == []


def test_without_nvml_a_gpu_benchmark_records_nothing_and_goes_on(tmp_path, monkeypatch):
    from benchmarks.harness.backends import get_backend

    monkeypatch.setenv("ASV_CONF_DIR", str(tmp_path))
    monkeypatch.setattr(clocks, "_nvml", False)  # what a host without the driver's library looks like
    clocks.record("Op", ("c",), "before", get_backend("mlx-gpu"))
    clocks.record("Op", ("c",), "before", get_backend("torch-cpu"))
    assert not list(tmp_path.rglob("*.clocks.jsonl"))
    assert clocks.read() is None and clocks.versions() == {}


def test_a_reading_the_gpu_does_not_report_is_left_empty(monkeypatch):
    class Nvml:
        NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 0, 1, 0
        nvmlClocksEventReasonSwPowerCap = 4

        def nvmlDeviceGetClockInfo(self, handle, which):
            return 1980

        def nvmlDeviceGetMaxClockInfo(self, handle, which):
            return 1980

        def nvmlDeviceGetTemperature(self, handle, which):
            return 40

        def nvmlDeviceGetPowerUsage(self, handle):
            raise RuntimeError("Not Supported")  # a MIG slice reports no power

        def nvmlDeviceGetEnforcedPowerLimit(self, handle):
            raise RuntimeError("Not Supported")

        def nvmlDeviceGetCurrentClocksEventReasons(self, handle):
            return 4

    monkeypatch.setattr(clocks, "_nvml", Nvml())
    monkeypatch.setattr(clocks, "_handle", lambda: object())
    state = clocks.read()
    assert state["power_w"] is None and state["sm_clock_mhz"] == 1980
    assert state["slowdown"] == ["software power cap"]


GPU = Ceilings(bandwidth_gb_s=4300.0, matmul_gflop_s=790_000.0, cache_bytes=60 * 2**20)


def test_throughput_over_a_ceiling_is_a_timing_bug():
    found = over_peak("ops.linalg.SquareMatMul", ("8192", "bfloat16", "torch-cuda"), 1.2e6, "GFLOP/s", 0, GPU)
    assert found is not None and "1.52x the measured ceiling" in found.describe()
    big = 2 * 2**30
    assert over_peak("ops.x.Softmax", ("c",), 5000.0, "GB/s", big, GPU) is not None


def test_figures_under_the_ceiling_or_in_cache_pass():
    assert over_peak("m", (), 780_000.0, "GFLOP/s", 0, GPU) is None
    assert over_peak("m", (), 4700.0, "GB/s", 2 * 2**30, GPU) is None  # within the 10% allowance
    # 100 MB fits in 4 x 60 MiB of L2: served from cache, bandwidth is no ceiling
    assert over_peak("m", (), 9000.0, "GB/s", 100e6, GPU) is None
    assert over_peak("m", (), float("nan"), "GB/s", 2 * 2**30, GPU) is None
    assert over_peak("m", (), 1e9, "tokens/s", 0, GPU) is None


def test_ceilings_take_the_best_backend_of_each_device_class():
    found = peaks.ceilings_from(
        {
            "torch-cpu": {"bandwidth": 21.0, "matmul": 170.0, "cache": 2**20},
            "mlx-cpu": {"bandwidth": 3.2, "matmul": 2.3, "cache": 2**20},
            "torch-cuda": {"bandwidth": 4300.0, "matmul": float("nan"), "cache": 60 * 2**20},
            "mlx-gpu": {"bandwidth": 3900.0, "matmul": 700_000.0, "cache": 0},
        }
    )
    assert found["cpu"] == Ceilings(21.0, None, 2**20)  # no matmul ceiling on a CPU
    assert found["gpu"] == Ceilings(4300.0, 700_000.0, 60 * 2**20)


def test_a_results_file_with_an_op_above_its_ceiling_is_flagged(tmp_path):
    import json

    from tools import ceilings

    backends = ["'torch-cuda'", "'torch-cpu'"]

    def row(values, params):
        return [values, params]

    results = {
        "runtime.Runtime.track_peak_bandwidth": row([4300.0, 20.0], [backends]),
        "runtime.Runtime.track_peak_matmul": row([790_000.0, 170.0], [backends]),
        "runtime.Runtime.track_cache_bytes": row([60 * 2**20, 2**20], [backends]),
        "ops.linalg.SquareMatMul.track_throughput": row(
            [1_600_000.0, 600_000.0],
            [["'8192x8192 @ 8192x8192'", "'4096x4096 @ 4096x4096'"], ["'bfloat16'"], ["'torch-cuda'"]],
        ),
    }
    path = tmp_path / "abc-existing.json"
    path.write_text(json.dumps({"version": 2, "result_columns": ["result", "params"], "results": results}))
    found = ceilings.findings(path)
    assert [f.params[0] for f in found] == ["8192x8192 @ 8192x8192"]
    assert "2.03x the measured ceiling" in found[0].describe()


def test_a_clocks_file_is_summarised_per_finding(tmp_path):
    import json

    lines = []
    for index, (clock, slowdown) in enumerate([(1980, []), (1500, ["software power cap"]), (1400, [])]):
        params = ["8192", "bfloat16", f"b{index}"]
        lines.append({"benchmark": "SquareMatMul", "params": params, "phase": "before", **STEADY})
        lines.append(
            {"benchmark": "SquareMatMul", "params": params, "phase": "after last sample",
             **STEADY, "sm_clock_mhz": clock, "slowdown": slowdown}
        )  # fmt: skip
    path = tmp_path / "run.clocks.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert clocks.summarise(path) == [
        "2 of 3 benchmark processes: SM clock more than 10% under its maximum after the last sample",
        "1 of 3 benchmark processes: the driver reported software power cap",
    ]
    assert clocks.summarise(tmp_path / "none.jsonl") == []
    # a later run's closing lines count only its own readings
    stamped = [{**line, "at": "2026-12-01T10:00:00+00:00"} for line in lines]
    stamped[-2:] = [{**line, "at": "2026-12-01T11:00:00+00:00"} for line in lines[-2:]]
    path.write_text("".join(json.dumps(line) + "\n" for line in stamped))
    since = datetime.datetime(2026, 12, 1, 10, 30, tzinfo=datetime.UTC)
    assert clocks.summarise(path, since=since) == [
        "1 of 1 benchmark processes: SM clock more than 10% under its maximum after the last sample"
    ]


def test_a_clocks_file_says_where_each_backends_time_went(tmp_path):
    import json

    def reading(params, phase, second, **extra):
        return {"benchmark": "GELU", "params": params, "phase": phase,
                "at": f"2026-12-01T10:00:{second:06.3f}+00:00", **STEADY, **extra}  # fmt: skip

    lines = []
    for start, backend in [(0.0, "mlx-gpu"), (10.0, "torch-cuda"), (20.0, "torch-cuda")]:
        params = ["64x1024", "float32", backend]
        probe_s = {"peak_memory": 0.1, "parity_error": 0.75}  # summed over a backend's sets
        lines += [
            reading(params, "before", start, prepare_s=0.5),
            reading(params, "after probes", start + 0.25, probe_s=probe_s),
            reading(params, "after first sample", start + 0.5),
            reading(params, "after last sample", start + 1.25),
        ]
    lines.append(reading(["x", "y"], "after", 30.0))  # an unpaired reading: not counted
    lines.append({"benchmark": "GELU", "phase": "inputs drawn ahead", "at": "2026-12-01T10:00:00.000+00:00",
                  "cases": 2, "seconds": 3.0})  # fmt: skip
    job = ["torch-cuda", "tinyllama", "float16", "eager"]  # a workload's set: built, then measured
    lines += [
        {
            **reading(job, "before", 31.0, build_s=12.5, build_phases={"model": 4.2, "first generate": 8.3}),
            "benchmark": "LLMGeneration",
        },
        {**reading(job, "after", 39.0), "benchmark": "LLMGeneration"},
    ]
    later = ["8x8", "float32", "torch-cuda"]  # another op in a later run, kept in the same file
    lines += [
        {**reading(later, "before", 50.0, prepare_s=4.0), "benchmark": "Sum"},
        {**reading(later, "after probes", 51.0, probe_s={"parity_error": 0.7}), "benchmark": "Sum"},
        {**reading(later, "after last sample", 52.0), "benchmark": "Sum"},
    ]
    path = tmp_path / "run.clocks.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"cut short')
    assert clocks.where_time_went(path) == [
        "52 s from the first clock reading to the last",
        # a part under half a second is left out of the split
        "mlx-gpu: 1 parameter sets, 0 s preparing, 0 s probing (parity_error 1 s), 1 s sampling",
        "torch-cuda: 3 parameter sets, 5 s preparing, 2 s probing (parity_error 2 s), 3 s sampling",
        "LLMGeneration: 1 parameter sets, 12 s building (model 4 s, first generate 8 s), 8 s measuring",
        "inputs of 2 cases drawn ahead in 3 s",
        "most time: LLMGeneration 20 s, GELU 8 s, Sum 6 s",
    ]
    later_run = datetime.datetime(2026, 12, 1, 10, 0, 40, tzinfo=datetime.UTC)
    assert clocks.where_time_went(path, since=later_run) == [
        "2 s from the first clock reading to the last",
        "torch-cuda: 1 parameter sets, 4 s preparing, 1 s probing (parity_error 1 s), 1 s sampling",
        "most time: Sum 6 s",
    ]
    assert clocks.where_time_went(tmp_path / "none.jsonl") == []
