"""The transformer LM pair: one set of weights, the same function, the same training (optimizer steps and
warm-up included), and an asv class that runs, skips and guards its memory."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from benchmarks.harness.backends import MlxBackend, TorchBackend, require_backend
from benchmarks.harness.frameworks import mlx_nn, mx, torch
from benchmarks.workloads import common, transformer_lm
from benchmarks.workloads.transformer_lm import (
    CONFIGS,
    LAYER_NORM_EPS,
    LMConfig,
    MlxSide,
    TorchSide,
    TransformerLMTraining,
    init_weights,
    markov_batches,
    warmup_lr,
)
from tests.conftest import ABSENT_REASON, ABSENT_TORCH_BACKEND, MLX_TEST_BACKEND, TORCH_TEST_BACKEND
from tests.workloads.helpers import run_job_class

TINY = LMConfig(
    layers=2, dim=32, heads=4, ffn=64, context=16, vocab=50, batch=2, warmup_steps=3, batches=2, loss_steps=4
)


def _on_torch(tokens: np.ndarray):
    """Token ids on the torch test backend's device."""
    return require_backend(TORCH_TEST_BACKEND).asarray(tokens, "int64")


def _pair(config: LMConfig = TINY) -> tuple[MlxSide, TorchSide]:
    weights = init_weights(config, seed=3)
    return (
        MlxSide(config, weights, require_backend(MLX_TEST_BACKEND)),
        TorchSide(config, weights, require_backend(TORCH_TEST_BACKEND)),
    )


def _step_both(mlx_side: MlxSide, torch_side: TorchSide, tokens: np.ndarray, targets: np.ndarray):
    mlx_loss = float(mlx_side.step(mx.array(tokens), mx.array(targets)))
    torch_loss = float(torch_side.step(_on_torch(tokens), _on_torch(targets)))
    return mlx_loss, torch_loss


def test_full_config_is_the_reference_size():
    full = CONFIGS["full"]
    assert (full.layers, full.dim, full.heads, full.ffn, full.context) == (12, 1024, 16, 4096, 1024)
    assert full.vocab == 10_240 and full.batch == 32
    assert (full.lr, full.weight_decay) == (3e-4, 1e-5)
    assert 170e6 < full.parameter_count() < 176e6


def test_both_sides_hold_the_same_weights_and_a_final_layer_norm_and_no_dropout():
    mlx_side, torch_side = _pair()
    start = init_weights(TINY, seed=3)
    for side in (mlx_side, torch_side):
        held = side.parameters()
        assert held.keys() == start.keys()
        for name, value in start.items():
            np.testing.assert_array_equal(held[name], value, err_msg=name)
    assert isinstance(torch_side.model.norm, torch.nn.LayerNorm)
    assert torch_side.model.norm.eps == LAYER_NORM_EPS
    assert isinstance(mlx_side.model.norm, mlx_nn.LayerNorm)
    assert mlx_side.model.norm.eps == LAYER_NORM_EPS
    assert not any(isinstance(m, torch.nn.Dropout) for m in torch_side.model.modules())


def _widened(weights: dict[str, np.ndarray], factor: float) -> dict[str, np.ndarray]:
    """Matrices scaled up so that pre-activations reach O(1), where GELU flavours and attention scalings
    differ visibly (GPT-2's 0.02 initialisation keeps everything nearly linear)."""
    return {k: v if "norm" in k or k.endswith(".bias") else v * factor for k, v in weights.items()}


@pytest.mark.parametrize("factor", [1.0, 25.0])
def test_logits_match(factor):
    weights = _widened(init_weights(TINY, seed=3), factor)
    mlx_side = MlxSide(TINY, weights, require_backend(MLX_TEST_BACKEND))
    torch_side = TorchSide(TINY, weights, require_backend(TORCH_TEST_BACKEND))
    tokens, _ = markov_batches(TINY, 1, seed=5)[0]
    mlx_logits = np.array(mlx_side.logits(mx.array(tokens)))
    torch_logits = torch_side.logits(_on_torch(tokens)).cpu().numpy()
    assert mlx_logits.shape == (TINY.batch, TINY.context, TINY.vocab)
    scale = float(np.abs(torch_logits).max())
    np.testing.assert_allclose(mlx_logits, torch_logits, rtol=1e-4, atol=1e-5 * scale)


def test_final_layer_norm_is_applied_on_both_sides():
    # A zero gain and bias in the final LayerNorm must zero the logits (the head has no bias).
    weights = init_weights(TINY, seed=3)
    weights["norm.weight"] = np.zeros_like(weights["norm.weight"])
    mlx_side = MlxSide(TINY, weights, require_backend(MLX_TEST_BACKEND))
    torch_side = TorchSide(TINY, weights, require_backend(TORCH_TEST_BACKEND))
    tokens, _ = markov_batches(TINY, 1, seed=5)[0]
    assert not np.any(np.array(mlx_side.logits(mx.array(tokens))))
    assert not np.any(torch_side.logits(_on_torch(tokens)).cpu().numpy())


def test_causal_attention_ignores_later_tokens_on_both_sides():
    mlx_side, torch_side = _pair()
    tokens, _ = markov_batches(TINY, 1, seed=6)[0]
    changed = tokens.copy()
    changed[:, -1] = (changed[:, -1] + 1) % TINY.vocab
    for logits in (
        lambda t: np.array(mlx_side.logits(mx.array(t))),
        lambda t: torch_side.logits(_on_torch(t)).cpu().numpy(),
    ):
        before, after = logits(tokens), logits(changed)
        np.testing.assert_array_equal(before[:, :-1], after[:, :-1])
        assert not np.allclose(before[:, -1], after[:, -1])


def test_warmup_learning_rates_are_equal_step_by_step():
    mlx_side, torch_side = _pair()
    batches = markov_batches(TINY, 2, seed=7)
    expected = [warmup_lr(TINY, k) for k in range(TINY.warmup_steps + 3)]
    assert expected[0] == pytest.approx(TINY.lr / TINY.warmup_steps)
    assert expected[TINY.warmup_steps - 1 :] == [TINY.lr] * 4
    for k, lr in enumerate(expected):
        assert mlx_side.learning_rate() == pytest.approx(lr, rel=1e-6), k
        assert torch_side.learning_rate() == pytest.approx(lr, rel=1e-12), k
        _step_both(mlx_side, torch_side, *batches[k % 2])


def test_training_steps_give_the_same_losses_and_update_every_parameter():
    mlx_side, torch_side = _pair()
    batches = markov_batches(TINY, 4, seed=8)
    for k in range(8):  # across the end of the 3-step warm-up
        mlx_loss, torch_loss = _step_both(mlx_side, torch_side, *batches[k % 4])
        assert mlx_loss == pytest.approx(torch_loss, rel=1e-5 * (1 + k)), k
    start = init_weights(TINY, seed=3)
    after_mlx, after_torch = mlx_side.parameters(), torch_side.parameters()
    for name, value in after_torch.items():
        np.testing.assert_allclose(after_mlx[name], value, rtol=1e-3, atol=2e-5, err_msg=name)
        # the published bug: torch's optimizer never stepped
        for side, after in (("torch", value), ("mlx", after_mlx[name])):
            assert not np.array_equal(after, start[name]), f"{side} never updated {name}"


def test_loss_falls_on_a_fixed_batch():
    eager = replace(TINY, lr=3e-3, warmup_steps=1)
    mlx_side, torch_side = _pair(eager)
    tokens, targets = markov_batches(eager, 1, seed=9)[0]
    losses = [_step_both(mlx_side, torch_side, tokens, targets) for _ in range(10)]
    first, last = losses[0], losses[-1]
    assert first[0] == pytest.approx(math.log(eager.vocab), rel=0.1)
    assert last[0] < 0.8 * first[0] and last[1] < 0.8 * first[1], losses
    np.testing.assert_allclose([m for m, _ in losses], [t for _, t in losses], rtol=1e-4)


def test_markov_batches_are_fixed_and_shifted_by_one_token():
    first, again = markov_batches(TINY, 2), markov_batches(TINY, 2)
    for (tokens, targets), (tokens2, targets2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(tokens, tokens2)
        np.testing.assert_array_equal(targets, targets2)
        np.testing.assert_array_equal(tokens[:, 1:], targets[:, :-1])
        assert tokens.dtype == np.int32 and tokens.shape == (TINY.batch, TINY.context)
        assert tokens.min() >= 0 and tokens.max() < TINY.vocab


def test_asv_class_runs_every_method_with_equal_losses(monkeypatch):
    monkeypatch.setitem(transformer_lm.CONFIGS, "quick", TINY)
    losses = {}
    for backend in (MLX_TEST_BACKEND, TORCH_TEST_BACKEND):
        job = transformer_lm.LM_JOB.build(backend)
        losses[backend] = job.loss_after_steps()
        assert 0 < losses[backend] < math.log(TINY.vocab) + 0.5
        # the job's own steps are undone before counting: steps in between change nothing
        job.train_step()
        assert job.loss_after_steps() == pytest.approx(losses[backend], rel=1e-6)
        figures = run_job_class(TransformerLMTraining, backend)
        assert min(figures["track_train_step_seconds"]["samples"]) > 0
        assert figures["track_tokens_per_s"] > 0
        assert figures["track_peak_memory"] >= 0
        # measured after the timings and the other tracks, from the same job: still the same loss
        assert figures["track_loss_after_steps"] == pytest.approx(losses[backend], rel=1e-6)
    assert losses[MLX_TEST_BACKEND] == pytest.approx(losses[TORCH_TEST_BACKEND], rel=1e-4)
    for method in ("track_tokens_per_s", "track_peak_memory", "track_loss_after_steps"):
        assert getattr(TransformerLMTraining, method).unit


@pytest.mark.parametrize(
    "backend, reason",
    [
        ("torch-compile", "runs eagerly"),
        (ABSENT_TORCH_BACKEND, ABSENT_REASON),
        ("no-such-backend", "unknown backend"),
    ],
)
def test_compiled_absent_and_unknown_backends_are_skipped_with_a_reason(backend, reason):
    with pytest.raises(NotImplementedError, match=reason):
        run_job_class(TransformerLMTraining, backend)


@pytest.mark.parametrize("backend", [MLX_TEST_BACKEND, TORCH_TEST_BACKEND])
def test_full_profile_skips_when_memory_is_short(backend, monkeypatch):
    monkeypatch.setenv("MTB_PROFILE", "full")
    for backend_class in (MlxBackend, TorchBackend):
        monkeypatch.setattr(backend_class, "available_bytes", lambda self: 2 * common.GIB)
    with pytest.raises(NotImplementedError, match=r"transformer LM training \(173M parameters.*needs about"):
        run_job_class(TransformerLMTraining, backend)


def test_memory_estimate_counts_materialised_attention():
    full = CONFIGS["full"]
    optimizer_state = 16 * full.parameter_count()
    assert full.training_bytes(materialised_attention=False) > optimizer_state
    extra = full.training_bytes(True) - full.training_bytes(False)
    assert extra == 4 * (full.layers + 3) * full.batch * full.heads * full.context**2
