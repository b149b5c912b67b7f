"""The CPU/GPU switch chain computes the same thing in both frameworks; without a GPU only its GPU route
is skipped."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.harness import parity
from benchmarks.workloads import device_switch as ds
from tests.workloads.helpers import run_job_class

SMALL = ds.ChainConfig(n=64, steps=6)


@pytest.mark.parametrize("framework", ds.FRAMEWORKS)
def test_cpu_chain_matches_the_float64_reference(framework):
    chain = ds.SwitchChain(framework, "cpu", SMALL)
    x, w = ds.chain_inputs(SMALL)
    expected = ds.reference_chain(x, w, SMALL.steps)
    parity.check(f"DeviceSwitch cpu {framework}", chain.result(), expected, "float32")
    assert not np.allclose(expected, x), "the chain really transforms its input"


def test_mlx_and_torch_chains_agree():
    mlx_out = ds.SwitchChain("mlx", "cpu", SMALL).result()
    torch_out = ds.SwitchChain("torch", "cpu", SMALL).result()
    parity.check("DeviceSwitch mlx vs torch", mlx_out, torch_out.astype(np.float64), "float32", factor=2)


@pytest.mark.parametrize("framework", ds.FRAMEWORKS)
def test_gpu_route_is_skipped_with_the_reason_when_there_is_no_gpu(framework):
    from benchmarks.harness.backends import get_backend

    gpus = ["mlx-gpu"] if framework == "mlx" else ["torch-cuda", "torch-mps"]
    if any(get_backend(g).unavailable_reason() is None for g in gpus):
        pytest.skip("this machine has a GPU: the route runs")
    with pytest.raises(NotImplementedError, match=f"{framework} cpu-gpu route needs a GPU: .*no"):
        ds.SwitchChain(framework, "cpu-gpu", SMALL)


def test_asv_class_times_the_chain(monkeypatch):
    monkeypatch.setitem(ds.CONFIGS, "quick", SMALL)
    for framework in ds.FRAMEWORKS:
        figures = run_job_class(ds.DeviceSwitch, "cpu", framework)
        assert figures["track_chain_seconds"]["number"] == 1
        assert min(figures["track_chain_seconds"]["samples"]) > 0


def test_a_route_whose_backends_the_run_leaves_out_is_skipped_with_the_reason(monkeypatch):
    monkeypatch.setenv("MTB_BACKENDS", "mlx-gpu,torch-cuda")  # what a GPU run selects
    for framework in ds.FRAMEWORKS:
        with pytest.raises(
            NotImplementedError, match=rf"cpu route runs on {framework}-cpu; .*leave out {framework}-cpu"
        ):
            ds.SwitchChain(framework, "cpu", SMALL)
    monkeypatch.setenv("MTB_BACKENDS", "mlx-cpu")
    ds.SwitchChain("mlx", "cpu", SMALL)  # selected: it runs
