"""The MLP regressor pair: one set of weights, the same function, the same training."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.harness.backends import require_backend
from benchmarks.workloads.mlp_regressor import (
    CONFIGS,
    MLPConfig,
    MLPRegressor,
    MlxSide,
    TorchSide,
    init_weights,
    make_data,
)
from tests.conftest import ABSENT_REASON, ABSENT_TORCH_BACKEND, MLX_TEST_BACKEND, TORCH_TEST_BACKEND
from tests.workloads.helpers import run_job_class

SMALL = MLPConfig(features=32, hidden=64, layers=3, targets=2, batch=64, samples=256)


def _pair(config: MLPConfig):
    weights = init_weights(config, seed=3)
    return (
        MlxSide(config, weights, require_backend(MLX_TEST_BACKEND)),
        TorchSide(config, weights, require_backend(TORCH_TEST_BACKEND)),
    )


def test_full_size_has_about_1_2_million_parameters():
    assert 1.1e6 < CONFIGS["full"].parameter_count() < 1.3e6
    assert CONFIGS["full"].hidden == 512 and CONFIGS["full"].batch == 512


def test_both_frameworks_start_from_the_same_weights_and_compute_the_same_function():
    mlx_side, torch_side = _pair(SMALL)
    for name, value in torch_side.parameters().items():
        np.testing.assert_array_equal(mlx_side.parameters()[name], value, err_msg=name)
    x, _ = make_data(SMALL, 128, seed=11)
    mlx_mean, mlx_var = (np.array(a) for a in mlx_side.predict(mlx_side_array(x)))
    torch_mean, torch_var = (a.cpu().numpy() for a in torch_side.predict(torch_array(x)))
    np.testing.assert_allclose(mlx_mean, torch_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(mlx_var, torch_var, rtol=1e-4, atol=1e-6)
    assert np.all(torch_var > 0)


def mlx_side_array(x):
    from benchmarks.harness.frameworks import mx

    return mx.array(x)


def torch_array(x):

    return require_backend(TORCH_TEST_BACKEND).asarray(x, "float32")


def test_training_steps_give_the_same_losses_and_really_update():
    mlx_side, torch_side = _pair(SMALL)
    x, y = make_data(SMALL, SMALL.samples, seed=12)
    mlx_losses, torch_losses = [], []
    for i in range(0, SMALL.samples, SMALL.batch):
        xb, yb = x[i : i + SMALL.batch], y[i : i + SMALL.batch]
        mlx_losses.append(float(mlx_side.step(mlx_side_array(xb), mlx_side_array(yb))))
        torch_losses.append(float(torch_side.step(torch_array(xb), torch_array(yb))))
    np.testing.assert_allclose(mlx_losses, torch_losses, rtol=2e-4)
    after_mlx, after_torch = mlx_side.parameters(), torch_side.parameters()
    for name, value in after_torch.items():
        np.testing.assert_allclose(after_mlx[name], value, rtol=1e-3, atol=1e-5, err_msg=name)
    start = init_weights(SMALL, seed=3)
    assert not np.allclose(after_torch["head.weight"], start["head.weight"]), "the optimizer must step"
    xb, yb = torch_array(x[: SMALL.batch]), torch_array(y[: SMALL.batch])
    repeated = [float(torch_side.step(xb, yb)) for _ in range(5)]
    assert repeated[-1] < repeated[0], f"steps on one batch must lower its loss: {repeated}"


def test_gradient_clipping_is_active_on_both_sides():
    # With Adam's eps at 1 the first update is ~lr * gradient (not its sign), so a clip to norm 1e-3
    # bounds how far the weights move; unclipped gradients here have a norm of order 1.
    tight = MLPConfig(
        **{**SMALL.__dict__, "max_grad_norm": 1e-3, "lr": 1.0, "weight_decay": 0.0, "adam_eps": 1.0}
    )
    mlx_side, torch_side = _pair(tight)
    start = {name: value.copy() for name, value in torch_side.parameters().items()}
    x, y = make_data(tight, tight.batch, seed=13)
    mlx_side.step(mlx_side_array(x), mlx_side_array(y))
    torch_side.step(torch_array(x), torch_array(y))
    moves = {}
    for name, value in torch_side.parameters().items():
        np.testing.assert_allclose(mlx_side.parameters()[name], value, rtol=1e-4, atol=1e-7, err_msg=name)
        moves[name] = value - start[name]
    total = float(np.sqrt(sum(np.sum(m.astype(np.float64) ** 2) for m in moves.values())))
    # Adam's bias-corrected first step is lr * g / (|g| + eps) elementwise: at most the clipped norm
    assert 1e-5 < total <= 1.01e-3, total


@pytest.mark.parametrize("backend", [MLX_TEST_BACKEND, TORCH_TEST_BACKEND])
def test_asv_class_runs_every_method(backend, monkeypatch):
    from benchmarks.workloads import mlp_regressor

    monkeypatch.setitem(mlp_regressor.CONFIGS, "quick", SMALL)
    figures = run_job_class(MLPRegressor, backend)
    for timing in ("track_epoch_seconds", "track_single_sample_latency_seconds"):
        assert figures[timing]["number"] == 1 and min(figures[timing]["samples"]) > 0
    assert figures["track_batch256_samples_per_s"] > 0
    assert figures["track_train_step_peak_memory"] >= 0


def test_compiled_and_absent_backends_are_skipped_with_a_reason():

    for backend, reason in (("torch-compile", "runs eagerly"), (ABSENT_TORCH_BACKEND, ABSENT_REASON)):
        with pytest.raises(NotImplementedError, match=reason):
            run_job_class(MLPRegressor, backend)
