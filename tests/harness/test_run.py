"""Bad input around one prepared benchmark: each is an asv skip naming the problem and the fix."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.harness.backends import get_backend
from benchmarks.harness.profiles import get_profile
from benchmarks.harness.run import OpRun
from benchmarks.ops.linalg import SQUARE_MATMUL
from benchmarks.ops.normalization import SOFTMAX

QUICK = get_profile("quick")


def test_a_shape_too_large_for_the_device_is_skipped_with_sizes(monkeypatch):
    backend = type(get_backend("torch-cpu"))
    monkeypatch.setattr(backend, "available_bytes", lambda self: 1024)
    with pytest.raises(NotImplementedError, match=r"SquareMatMul 256x256 .* needs about .* GiB.*MTB_PROFILE"):
        OpRun.prepare(SQUARE_MATMUL, SQUARE_MATMUL.quick[1].label, "float32", "torch-cpu", QUICK)


def _prepare_raises(monkeypatch, exc: Exception) -> None:
    def failing(self, fn, args):
        raise exc

    monkeypatch.setattr(type(get_backend("mlx-cpu")), "prepare", failing)


def test_running_out_of_memory_while_preparing_is_a_skip(monkeypatch):
    _prepare_raises(monkeypatch, RuntimeError("[malloc] Unable to allocate 4294967296 bytes: out of memory"))
    with pytest.raises(NotImplementedError, match="ran out of memory"):
        OpRun.prepare(SOFTMAX, SOFTMAX.quick[0].label, "float32", "mlx-cpu", QUICK)


def test_a_float32_failure_is_an_error_but_a_half_precision_one_a_skip(monkeypatch):
    _prepare_raises(monkeypatch, ValueError("shape mismatch"))
    with pytest.raises(ValueError, match="shape mismatch"):
        OpRun.prepare(SOFTMAX, SOFTMAX.quick[0].label, "float32", "mlx-cpu", QUICK)
    with pytest.raises(NotImplementedError, match="does not run Softmax in bfloat16"):
        OpRun.prepare(SOFTMAX, SOFTMAX.quick[0].label, "bfloat16", "mlx-cpu", QUICK)


def test_unknown_case_and_dtype_are_skips_naming_the_choices():
    with pytest.raises(NotImplementedError, match="Softmax has no quick case '1x1'; its cases: 8x1e5"):
        OpRun.prepare(SOFTMAX, "1x1", "float32", "torch-cpu", QUICK)
    with pytest.raises(NotImplementedError, match="unknown dtype 'float8'"):
        OpRun.prepare(SOFTMAX, SOFTMAX.quick[0].label, "float8", "torch-cpu", QUICK)


def test_a_classs_inputs_are_drawn_ahead_together_as_each_case_would_draw_them(tmp_path, monkeypatch):
    from benchmarks.harness import inputs, run

    monkeypatch.setenv("MTB_INPUT_CACHE", str(tmp_path / "made-when-first-needed"))
    tmp_path = tmp_path / "made-when-first-needed"
    monkeypatch.setattr(run, "usable_cores", lambda: 4)
    profile = get_profile("quick")
    labels = [case.label for case in SOFTMAX.quick]
    dtypes = profile.stored_dtypes(SOFTMAX.low_precision)
    keeping: list[str | None] = []  # whose files each making of room keeps
    make_room = inputs.make_room

    def recorded(folder, size, keep=None):
        keeping.append(keep)
        return make_room(folder, size, keep)

    monkeypatch.setattr(inputs, "make_room", recorded)
    assert run.draw_ahead(SOFTMAX, profile, [*labels, labels[0]]) == len(labels)
    assert len(list(tmp_path.glob("*.npy"))) == len(labels) * len(dtypes) > len(labels)
    assert keeping and set(keeping) == {SOFTMAX.name}  # the class's own files stay while it draws
    for case in SOFTMAX.quick:
        for dtype in dtypes:
            kept = run._inputs_file(SOFTMAX, case, dtype)
            seed = run.stable_seed(SOFTMAX.name, case.label)
            own = inputs.make(seed, lambda rng, c=case: SOFTMAX.make_inputs(rng, c), dtype)
            got = inputs._read(kept)
            assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(got, own, strict=True))
    assert run.draw_ahead(SOFTMAX, profile, labels) == 0  # nothing left to draw


def test_nothing_is_drawn_ahead_without_a_cache_or_beyond_its_bound(tmp_path, monkeypatch):
    from benchmarks.harness import run

    labels = [case.label for case in SOFTMAX.quick]
    monkeypatch.setenv("MTB_INPUT_CACHE", "off")
    assert run.draw_ahead(SOFTMAX, get_profile("quick"), labels) == 0
    monkeypatch.setenv("MTB_INPUT_CACHE", str(tmp_path))
    monkeypatch.setenv("MTB_INPUT_CACHE_GB", "0.0001")  # 100 kB: less than the cases' files together
    assert run.draw_ahead(SOFTMAX, get_profile("quick"), labels) == 0
    assert not list(tmp_path.iterdir())


def test_a_dtype_left_out_is_drawn_ahead_and_a_failing_draw_is_left_to_its_set(tmp_path, monkeypatch):
    import dataclasses

    from benchmarks.harness import run

    monkeypatch.setenv("MTB_INPUT_CACHE", str(tmp_path))
    monkeypatch.setattr(run, "usable_cores", lambda: 4)
    profile = get_profile("quick")
    labels = [case.label for case in SOFTMAX.quick]
    assert run.draw_ahead(SOFTMAX, profile, labels) == len(labels)
    evicted = [run._inputs_file(SOFTMAX, case, "bfloat16") for case in SOFTMAX.quick[:2]]
    for path in evicted:
        path.unlink()
    assert run.draw_ahead(SOFTMAX, profile, labels) == 2
    assert all(path.exists() for path in evicted)

    def make_inputs(rng, case):
        if case.label == labels[1]:
            raise MemoryError("this case does not fit")
        return SOFTMAX.make_inputs(rng, case)

    failing = dataclasses.replace(SOFTMAX, name="SoftmaxFailingOnce", make_inputs=make_inputs)
    assert run.draw_ahead(failing, profile, labels) == len(labels) - 1
