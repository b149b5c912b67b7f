"""The fidelity check: its arithmetic and flags on crafted figures, its reading of asv results, and the
bare measurement processes (one framework each; a bad request reported, the others measured)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os

import pytest
from asv.results import Results
from asv.runner import BenchmarkResult

from benchmarks.ops.activations import ReLU
from tools import fidelity
from tools.fidelity import BarePlan, Row

QUICK_PLAN = BarePlan(warmup_seconds=0.01, stream_seconds=0.01, streams=2, processes=1)
RELU = "ops.activations.ReLU.time_forward"
RELU_CASE = ReLU.params[0][0]


def _row(suite: float | None, bare: float | None) -> Row:
    return Row("ops.x.Op.time_forward", ("c", "float32", "mlx-cpu"), "mlx-cpu", suite, None, None, bare)


@pytest.mark.parametrize(
    ("suite", "bare", "flagged"),
    [
        (1.09e-3, 1.0e-3, False),  # within 10% at 50 us or more
        (1.11e-3, 1.0e-3, True),
        (0.89e-3, 1.0e-3, True),
        (60e-6, 50e-6, True),  # 50 us is a large call: 20% is too much
        (36e-6, 30e-6, False),  # under 50 us the bound is 25%
        (40e-6, 30e-6, True),
        (22e-6, 30e-6, True),
    ],
)
def test_ratios_are_flagged_outside_their_bound(suite, bare, flagged):
    row = _row(suite, bare)
    assert row.ratio == pytest.approx(suite / bare)
    assert row.flagged is flagged


def test_the_range_of_bare_figures_separates_drift_from_a_harness_error():
    row = _row(1.15e-3, None)
    row.bare_runs = [[1.0e-3, 1.0e-3, 1.1e-3], [1.2e-3, 1.2e-3, 1.3e-3]]  # the machine slowed down
    row.bare_seconds = 1.1e-3
    assert row.bare_range == pytest.approx((1.0e-3, 1.2e-3))
    assert row.outside_range == 1.0 and not row.flagged_outside_range
    row.suite_seconds = 1.5e-3
    assert row.outside_range == pytest.approx(1.25) and row.flagged and row.flagged_outside_range
    row.suite_seconds = 0.8e-3
    assert row.outside_range == pytest.approx(0.8) and row.flagged_outside_range
    info = fidelity.summary([row])
    assert info["flagged_outside_bare_range"] == 1 and info["bare_drift_median"] == pytest.approx(0.2)


def test_a_row_without_either_figure_has_no_ratio_and_no_flag():
    for row in (_row(None, 1e-3), _row(1e-3, None)):
        assert row.ratio is None and not row.flagged


def test_summary_and_table_count_what_was_compared():
    rows = [_row(1.0e-3, 1.0e-3), _row(1.5e-3, 1.0e-3), _row(20e-6, 21e-6), _row(None, None)]
    rows[3].note = "skipped: no CUDA device"
    info = fidelity.summary(rows)
    assert info["compared"] == 3 and info["flagged"] == 1 and info["without_figure"] == 1
    assert info["ratio_50us_or_more"]["n"] == 2 and info["ratio_50us_or_more"]["max"] == pytest.approx(1.5)
    assert info["ratio_under_50us"]["n"] == 1
    table = fidelity.format_table(rows)
    assert "FLAG" in table and "skipped: no CUDA device" in table and "compared 3, flagged 1" in table


def _results_file(tmp_path):
    """An asv results file as asv writes it: one op timing over two backends (one skipped)."""
    params = [[f"'{RELU_CASE}'"], ["'float32'"], ["'mlx-cpu'", "'torch-cuda'"]]
    results = Results({"machine": "m"}, {}, "a" * 40, 0, "3.11", "existing-py", {})
    benchmark = {"name": RELU, "params": params, "version": "1"}
    samples = [0.0010, 0.0011, 0.0012, 0.0013]
    outcome = BenchmarkResult(
        result=[True, None], samples=[samples, None], number=[1, None], errcode=0, stderr="", profile=None
    )
    now = datetime.datetime.now(datetime.UTC)
    results.add_result(benchmark, outcome, record_samples=True, started_at=now)
    results.save(str(tmp_path))
    return next(p for p in tmp_path.rglob("*.json") if p.name != "machine.json")


def test_suite_rows_read_medians_quartiles_and_the_missing(tmp_path):
    rows = fidelity.suite_rows(_results_file(tmp_path))
    assert [r.backend for r in rows] == ["mlx-cpu", "torch-cuda"]
    measured, skipped = rows
    assert measured.params == (RELU_CASE, "float32", "mlx-cpu")
    assert measured.suite_seconds == pytest.approx(0.00115)
    assert measured.suite_q25 < measured.suite_seconds < measured.suite_q75
    assert skipped.suite_seconds is None and "no figure" in skipped.note
    assert fidelity.suite_rows(_results_file(tmp_path), backends=["torch-cpu"]) == []


def test_bare_worker_measures_each_request_and_reports_bad_ones():
    answers = fidelity.bare_worker(
        [
            {"benchmark": RELU, "params": [RELU_CASE, "float32", "torch-cpu"]},
            {"benchmark": RELU, "params": [RELU_CASE, "float32", "tpu-jax"]},
            {"benchmark": "ops.activations.NoSuchOp.time_forward", "params": []},
        ],
        QUICK_PLAN,
    )
    assert len(answers[0]["streams"]) == 2 and min(answers[0]["streams"]) > 0
    assert "skipped" in answers[1]["note"] and "unknown backend 'tpu-jax'" in answers[1]["note"]
    assert "failed: AttributeError" in answers[2]["note"]


def test_bare_processes_hold_one_framework_and_fill_the_rows():
    rows = [
        Row(RELU, (RELU_CASE, "float32", "mlx-cpu"), "mlx-cpu", suite_seconds=1e-4),
        Row(RELU, (RELU_CASE, "float32", "torch-cpu"), "torch-cpu", suite_seconds=1e-4),
        Row(RELU, (RELU_CASE, "float32", "torch-cuda"), "torch-cuda", suite_seconds=1e-4),
    ]
    fidelity.run_bare(rows, QUICK_PLAN)
    mlx, cpu, cuda = rows
    assert mlx.bare_seconds and cpu.bare_seconds
    assert [len(run) for run in mlx.bare_runs] == [2]
    assert mlx.frameworks == ["mlx"] and cpu.frameworks == ["torch"]
    if cuda.bare_seconds is None:  # no CUDA here: said, not raised
        assert "no CUDA device" in cuda.note
    # a second call brackets the suite's figure: the streams accumulate, one run per bare process
    fidelity.run_bare(rows[:1], dataclasses.replace(QUICK_PLAN, processes=2))
    assert [len(run) for run in mlx.bare_runs] == [2, 2, 2]


def test_a_results_file_that_does_not_exist_is_one_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no results file at"):
        fidelity.fidelity(None, ["mlx-cpu"], tmp_path, tmp_path / "nope.json", QUICK_PLAN, {})


def test_json_report_has_rows_summary_and_facts(tmp_path):
    rows = [_row(1.2e-3, 1.0e-3)]
    fidelity.write_json(rows, tmp_path / "f.json", {"profile": "quick"})
    data = json.loads((tmp_path / "f.json").read_text())
    assert data["facts"] == {"profile": "quick"} and data["summary"]["flagged"] == 1
    assert data["rows"][0]["flagged"] and data["rows"][0]["ratio"] == pytest.approx(1.2)


def test_unknown_and_absent_backends_are_left_out_with_a_message_and_the_rest_checked(monkeypatch, capsys):
    from tools import mtb

    status = {name: None for name in ("mlx-cpu", "torch-cpu")} | {"torch-cuda": "torch-cuda: no CUDA device"}
    monkeypatch.setattr(mtb, "probe_backends", lambda: status)
    assert mtb.fidelity_backends("mlx-cpu,bogus,torch-cuda") == ["mlx-cpu"]
    said = capsys.readouterr().out
    assert "unknown backend 'bogus' left out" in said and "not here: torch-cuda: no CUDA device" in said
    with pytest.raises(SystemExit, match="none of the backends 'bogus' runs here"):
        mtb.fidelity_backends("bogus")


def test_a_selection_that_matches_no_timing_is_one_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no timing benchmark matches --bench"):
        fidelity.fidelity(r"^ops\.NoSuchThing", ["mlx-cpu"], tmp_path, None, QUICK_PLAN, dict(os.environ))


def test_planned_rows_leave_out_what_the_profile_never_compiles():
    from benchmarks.ops.activations import GELU

    params = [[repr(v) for v in values] for values in GELU.params]
    rows = fidelity.planned_rows("ops.activations.GELU.time_forward", params, ["mlx-cpu", "torch-compile"])
    compiled = [r.params for r in rows if r.backend == "torch-compile"]
    # the quick profile compiles GELU's first case in float32 only
    assert compiled == [(GELU.params[0][0], "float32", "torch-compile")]
    assert len([r for r in rows if r.backend == "mlx-cpu"]) == len(GELU.params[0]) * len(GELU.params[1])
    # an op outside the compiled subset keeps no torch-compile row; other backends are left out
    relu = [[repr(v) for v in values] for values in ReLU.params]
    assert not fidelity.planned_rows("ops.activations.ReLU.time_forward", relu, ["torch-compile"])
    assert {
        r.backend for r in fidelity.planned_rows("ops.activations.ReLU.time_forward", relu, ["mlx-cpu"])
    } == {"mlx-cpu"}


def test_a_bare_process_holds_one_framework_except_a_workloads_mlx_side():
    from tools.fidelity import blocked_modules

    assert blocked_modules("mlx-cpu", ["ops.activations.GELU.time_forward"]) == ["torch"]
    assert blocked_modules("torch-cpu", ["ops.activations.GELU.time_forward"]) == ["mlx", "mlx.core"]
    # the MLX side of a workload is built from torch's weights
    assert blocked_modules("mlx-cpu", ["workloads.whisper.WhisperInference.track_decode_seconds"]) == []
    assert blocked_modules("torch-cpu", ["workloads.whisper.WhisperInference.track_decode_seconds"]) == [
        "mlx",
        "mlx.core",
    ]
