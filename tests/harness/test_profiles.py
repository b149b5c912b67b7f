from __future__ import annotations

import math

import pytest

from benchmarks.harness.opspec import numel
from benchmarks.harness.profiles import (
    PROFILE_NAMES,
    ProfileError,
    active_profile,
    compiled_skip_reason,
    get_profile,
)
from benchmarks.harness.settings import SettingError
from benchmarks.ops import all_specs


def test_unknown_profile_names_the_choices(monkeypatch):
    monkeypatch.setenv("MTB_PROFILE", "medium")
    with pytest.raises(SettingError, match=r"MTB_PROFILE='medium' is not one of quick, full"):
        active_profile()
    with pytest.raises(ProfileError, match=r"'medium'.*MTB_PROFILE.*quick, full"):
        get_profile("medium")


def test_profiles_exist():
    for name in PROFILE_NAMES:
        assert get_profile(name).name == name


@pytest.mark.parametrize("spec", all_specs(), ids=lambda s: s.name)
def test_quick_shapes_are_scaled_down_versions_of_full(spec):
    assert spec.quick and spec.full
    labels = [c.label for c in spec.quick]
    assert len(set(labels)) == len(labels), "case labels are asv parameter values and must be unique"
    quick_size = max(sum(numel(s) for s in c.shapes) for c in spec.quick)
    full_size = max(sum(numel(s) for s in c.shapes) for c in spec.full)
    assert quick_size <= full_size
    assert set(labels).isdisjoint(c.label for c in spec.full) or spec.name in {
        "MatMul",
        "Gather",
        "Scatter",
        "ScatterAdd",
        "ScatterMax",
    }


def test_quick_cases_fit_the_small_machine():
    # The quick profile must fit a 2-core VM: no case moves more than 64 MiB in float32.
    for spec in all_specs():
        for c in spec.quick:
            assert spec.cost(c, 4).bytes <= 64 * 2**20, (spec.name, c.label)
            assert math.isfinite(spec.cost(c, 4).flops)


def test_compiled_subset_rule():
    quick, full = get_profile("quick"), get_profile("full")
    assert compiled_skip_reason(quick, "Softmax", 0, "float32") is None
    assert "MTB_PROFILE=full" in compiled_skip_reason(quick, "Softmax", 1, "float32")
    assert compiled_skip_reason(quick, "Sort", 0, "float32") is not None
    assert compiled_skip_reason(full, "Sort", 2, "bfloat16") is None
    names = {spec.name for spec in all_specs()}
    assert set(quick.compiled_subset) <= names


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_a_run_of_gpu_backends_only_takes_the_accelerator_plan(name):
    profile = get_profile(name)
    plan = profile.accelerator
    assert plan is not None
    gpu = profile.planned_for(["mlx-gpu", "mlx-gpu-compiled", "torch-cuda", "torch-compile"])
    assert (gpu.rounds, gpu.repeat, gpu.sample) == (plan.rounds, plan.repeat, plan.sample)
    assert gpu.throughput_seconds == plan.throughput_seconds
    # fewer processes than the CPU plan, yet as many samples per point as the detector's sample test uses
    assert gpu.rounds < profile.rounds and gpu.rounds * gpu.repeat >= 8
    # shapes and dtypes are the profile's: one history line per profile on every machine
    assert gpu.name == profile.name and gpu.low_precision_dtypes == profile.low_precision_dtypes
    # a CPU backend anywhere, or torch-compile alone (it follows the machine), keeps the CPU plan
    for names in (["mlx-cpu", "torch-cuda"], ["torch-compile"], ["mlx-cpu", "torch-cpu", "torch-compile"]):
        assert profile.planned_for(names) == profile


def test_the_active_profile_follows_the_selected_backends(monkeypatch):
    monkeypatch.setenv("MTB_PROFILE", "full")
    monkeypatch.setenv("MTB_BACKENDS", "mlx-gpu,torch-cuda")
    assert active_profile().rounds == get_profile("full").accelerator.rounds
    monkeypatch.setenv("MTB_BACKENDS", "mlx-cpu,torch-cpu")
    assert active_profile() == get_profile("full")
