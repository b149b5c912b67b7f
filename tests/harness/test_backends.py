from __future__ import annotations

import numpy as np
import pytest

from benchmarks.harness import frameworks
from benchmarks.harness.backends import (
    BACKEND_NAMES,
    HostPeakMemory,
    get_backend,
    require_backend,
    selected_backend_names,
)
from benchmarks.harness.frameworks import mx, torch
from benchmarks.harness.settings import SettingError


def test_unknown_backend_is_an_asv_skip_naming_it_and_the_known_ones():
    with pytest.raises(NotImplementedError, match=r"unknown backend 'mlx-tpu'.*mlx-cpu.*torch-compile"):
        require_backend("mlx-tpu")


@pytest.mark.parametrize("name", ["mlx-gpu", "mlx-gpu-compiled", "torch-cuda", "torch-mps"])
def test_absent_accelerator_is_skipped_with_its_reason(name):
    reason = get_backend(name).unavailable_reason()
    if reason is None:
        pytest.skip(f"{name} is present on this machine")
    with pytest.raises(NotImplementedError, match=name):
        require_backend(name)
    assert "no" in reason


def test_cpu_backends_are_available_here():
    for name in ("mlx-cpu", "torch-cpu", "torch-compile"):
        assert get_backend(name).unavailable_reason() is None


def test_backend_selection_refuses_unknown_names(monkeypatch):
    monkeypatch.setenv("MTB_BACKENDS", "mlx-cpu, torch-cpu")
    assert selected_backend_names() == ["mlx-cpu", "torch-cpu"]
    monkeypatch.setenv("MTB_BACKENDS", "all")
    assert selected_backend_names() == list(BACKEND_NAMES)
    monkeypatch.setenv("MTB_BACKENDS", "mlx-cpu,bogus-gpu")
    with pytest.raises(SettingError, match=r"MTB_BACKENDS='mlx-cpu,bogus-gpu'.*bogus-gpu.*torch-compile"):
        selected_backend_names()


def test_bad_thread_count_names_the_variable(monkeypatch):
    monkeypatch.setenv("MTB_THREADS", "two")
    with pytest.raises(SettingError, match="MTB_THREADS='two'"):
        get_backend("torch-cpu").activate()


def test_torch_threads_follow_the_setting(monkeypatch):
    monkeypatch.setenv("MTB_THREADS", "1")
    get_backend("torch-cpu").activate()
    assert torch.get_num_threads() == 1
    monkeypatch.delenv("MTB_THREADS")
    get_backend("torch-cpu").activate()
    assert get_backend("torch-cpu").settings()["threads"] >= 1


def test_float32_matmul_precision_is_equalised_and_validated(monkeypatch):
    get_backend("torch-cpu").activate()
    assert torch.backends.cudnn.allow_tf32 is False
    assert torch.get_float32_matmul_precision() == "highest"
    monkeypatch.setenv("MTB_FLOAT32_MATMUL", "fast")
    with pytest.raises(ValueError, match=r"MTB_FLOAT32_MATMUL='fast'.*ieee, tf32"):
        frameworks.float32_matmul_precision()


@pytest.mark.parametrize("name", ["mlx-cpu", "torch-cpu"])
def test_round_trip_keeps_values_and_dtypes(name):
    backend = require_backend(name)
    data = np.random.default_rng(0).standard_normal((3, 5))
    for dtype in ("float32", "float16", "bfloat16"):
        back = backend.to_numpy(backend.asarray(data, dtype))
        assert back.shape == data.shape
        assert np.allclose(back, data, rtol=1e-2, atol=1e-2)
    index = backend.to_numpy(backend.asarray(np.array([3, 1, 2]), "float32"))
    assert index.dtype.kind in "iu" and index.tolist() == [3, 1, 2]


def test_mlx_sync_forces_evaluation():
    backend = require_backend("mlx-cpu")
    x = mx.ones((512, 512))
    mx.eval(x)
    y = x * 2 + 1
    backend.sync(y)
    # An evaluated array converts without further work; the value shows the graph ran.
    assert float(np.array(y).sum()) == 3.0 * 512 * 512


def test_host_peak_memory_sees_a_temporary_allocation():
    probe = HostPeakMemory()
    probe.start()
    block = np.ones(40 * 2**20 // 8)
    del block
    peak = probe.peak_bytes()
    assert 35 * 2**20 <= peak <= 200 * 2**20


def test_settings_record_versions_and_precision():
    facts = get_backend("torch-cpu").settings()
    assert facts["framework_version"] == torch.__version__
    assert facts["float32_matmul"] == "ieee"
    assert facts["blas"] != ""
    assert get_backend("mlx-cpu").settings()["framework_version"] == mx.__version__
