"""The Whisper pair: one set of weights, the same encoder, the same logits, the same greedy tokens."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from benchmarks.harness.backends import MlxBackend, TorchBackend, require_backend
from benchmarks.workloads import whisper
from benchmarks.workloads.checkpoints import CheckpointError, checkpoint_env
from benchmarks.workloads.common import mlx_weights, torch_weights
from benchmarks.workloads.whisper import (
    CONFIGS,
    PROMPT,
    MlxWhisper,
    TorchWhisper,
    WhisperInference,
    WhisperJob,
    WhisperSize,
    log_mel,
    mel_for,
    mlx_name,
    random_torch_model,
)
from tests.conftest import ABSENT_REASON, ABSENT_TORCH_BACKEND, MLX_TEST_BACKEND, TORCH_TEST_BACKEND
from tests.workloads.helpers import run_job_class

# whisper-tiny's layout, narrowed; the vocabulary stays whole because the prompt uses its top ids.
TINY = WhisperSize(
    d_model=64,
    encoder_layers=2,
    decoder_layers=2,
    encoder_heads=2,
    decoder_heads=2,
    ffn=256,
    audio_positions=50,
    text_positions=64,
    new_tokens=12,
)
# With transformers' init_std of 0.02 a random decoder repeats one token forever, which would not show a
# KV cache at the wrong position; 0.2 gives a trajectory that changes token (seed 2 below: 7 distinct in 12).
VARIED = replace(TINY, init_std=0.2)


def _pair(size: WhisperSize, dtype: str = "float32", seed: int = 2):
    model = random_torch_model(size, seed)
    reference = torch_weights(model)
    mlx_side = MlxWhisper(model, require_backend(MLX_TEST_BACKEND), dtype)
    torch_side = TorchWhisper(model, require_backend(TORCH_TEST_BACKEND), dtype)
    return mlx_side, torch_side, reference


def _encode_both(mlx_side, torch_side, size: WhisperSize, dtype: str = "float32"):
    mel = log_mel(size, seed=5)
    mlx_features = mlx_side.encode(mel_for(mlx_side.backend, mel, dtype))
    torch_features = torch_side.encode(mel_for(torch_side.backend, mel, dtype))
    return mlx_features, torch_features


def _close(actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> float:
    """assert_allclose with atol scaled to the output's magnitude; returns the max difference."""
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * float(np.abs(expected).max()))
    return float(np.abs(actual - expected).max())


def test_full_config_is_whisper_tiny_on_30_s_and_quick_only_shortens_the_work():
    full, quick = CONFIGS["full"], CONFIGS["quick"]
    assert (full.d_model, full.encoder_layers, full.decoder_layers) == (384, 4, 4)
    assert (full.encoder_heads, full.decoder_heads, full.ffn, full.vocab) == (6, 6, 1536, 51865)
    assert (full.n_mels, full.mel_frames, full.audio_positions, full.text_positions) == (80, 3000, 1500, 448)
    assert full.audio_seconds == 30.0 and full.new_tokens == 128
    assert full.parameter_count() == 37_760_640  # whisper-tiny, output projection tied
    assert replace(quick, audio_positions=1500, new_tokens=128) == full
    assert quick.audio_seconds < 5 and quick.new_tokens == 16


def test_parameter_count_and_config_match_the_transformers_model():
    model = random_torch_model(TINY)
    assert sum(p.numel() for p in model.parameters()) == TINY.parameter_count()
    config = model.config
    assert config.activation_function == "gelu" and not config.scale_embedding
    assert config.dropout == config.attention_dropout == config.activation_dropout == 0.0
    assert WhisperSize.from_hf_config(config, TINY.new_tokens) == TINY


def _as_mlx(name: str, value: np.ndarray) -> np.ndarray:
    """A torch weight in MLX's layout (channels-last conv kernels)."""
    return np.moveaxis(value, 1, -1) if name.startswith("model.encoder.conv") and value.ndim == 3 else value


def _assert_same_weights(mlx_side, reference: dict[str, np.ndarray]) -> None:
    mlx_params = mlx_weights(mlx_side.model)
    mapped = {mlx_name(name): name for name in reference if mlx_name(name) is not None}
    assert set(mapped) == set(mlx_params) - {"alignment_heads"}  # word-timing head indices, no weight
    for target, source in mapped.items():
        np.testing.assert_array_equal(mlx_params[target], _as_mlx(source, reference[source]), err_msg=target)


def test_both_sides_hold_the_same_weights():
    mlx_side, torch_side, reference = _pair(TINY)
    _assert_same_weights(mlx_side, reference)
    # biases and LayerNorms are off their 0/1 start, so a mix-up of two of them would show above
    assert np.abs(reference["model.decoder.layers.0.encoder_attn_layer_norm.bias"]).max() > 0
    # the output projection is the token embedding on both sides
    hf = torch_side.model
    assert hf.proj_out.weight.data_ptr() == hf.model.decoder.embed_tokens.weight.data_ptr()


def test_the_encoder_position_table_is_copied_and_is_whispers_sinusoid():
    from mlx_whisper.whisper import sinusoids

    mlx_side, _, reference = _pair(TINY)
    table = reference["model.encoder.embed_positions.weight"]
    np.testing.assert_array_equal(np.array(mlx_side.model.encoder._positional_embedding), table)
    # mlx-whisper's own table is the same function, computed with a different rounding (hence the copy)
    own = np.array(sinusoids(TINY.audio_positions, TINY.d_model))
    np.testing.assert_allclose(own, table, atol=1e-4)


def test_encoder_outputs_and_prompt_logits_match():
    mlx_side, torch_side, _ = _pair(TINY)
    mlx_features, torch_features = _encode_both(mlx_side, torch_side, TINY)
    assert mlx_features.shape == tuple(torch_features.shape) == (1, TINY.audio_positions, TINY.d_model)
    encoder_diff = _close(np.array(mlx_features), torch_features.cpu().numpy(), rtol=1e-4, atol=1e-5)
    prompt = np.array([PROMPT])
    mlx_logits, _ = mlx_side.logits(mlx_features, mlx_side.backend.asarray(prompt, "int32"))
    torch_logits, _ = torch_side.logits(torch_features, torch_side.backend.asarray(prompt, "int64"))
    assert mlx_logits.shape == tuple(torch_logits.shape) == (1, len(PROMPT), TINY.vocab)
    logits_diff = _close(np.array(mlx_logits), torch_logits.cpu().numpy(), rtol=1e-4, atol=1e-5)
    print(f"float32 max |diff|: encoder {encoder_diff:.2e}, prompt logits {logits_diff:.2e}")


def test_greedy_decoding_gives_the_same_tokens_with_the_same_logits_at_every_step():
    mlx_side, torch_side, _ = _pair(VARIED)
    mlx_features, torch_features = _encode_both(mlx_side, torch_side, VARIED)
    steps = VARIED.new_tokens
    torch_tokens = torch_side.decode(torch_features, steps).cpu().numpy()
    mlx_tokens = np.array(mlx_side.decode(mlx_features, steps))
    # Teacher-forced: both caches are fed torch's tokens, so every step's logits compare even if a
    # near-tie flipped one argmax.  A flip needs a top-2 margin below the logit difference: the margin
    # check shows this seed is far from that, which makes the exact token comparison meaningful.
    mlx_cache = torch_cache = None
    mlx_in, torch_in = mlx_side.prompt, torch_side.prompt
    worst_diff, smallest_margin = 0.0, float("inf")
    for step in range(steps):
        mlx_logits, mlx_cache = mlx_side.logits(mlx_features, mlx_in, mlx_cache)
        torch_logits, torch_cache = torch_side.logits(torch_features, torch_in, torch_cache)
        expected = torch_logits[0, -1].cpu().numpy()
        worst_diff = max(worst_diff, _close(np.array(mlx_logits[0, -1]), expected, rtol=1e-4, atol=1e-5))
        top2 = np.sort(expected)[-2:]
        smallest_margin = min(smallest_margin, float(top2[1] - top2[0]))
        assert int(expected.argmax()) == torch_tokens[0, step]
        next_token = np.array([[torch_tokens[0, step]]])
        mlx_in = mlx_side.backend.asarray(next_token, "int32")
        torch_in = torch_side.backend.asarray(next_token, "int64")
    print(f"greedy: max logit |diff| {worst_diff:.2e}, smallest top-2 margin {smallest_margin:.2e}")
    assert smallest_margin > 100 * worst_diff
    np.testing.assert_array_equal(mlx_tokens, torch_tokens)
    assert len(set(torch_tokens[0].tolist())) >= 5, "the trajectory should change token"


def test_float16_runs_on_both_sides_from_the_same_rounded_weights():
    mlx_side, torch_side, _ = _pair(TINY, "float16")
    _assert_same_weights(mlx_side, torch_weights(torch_side.model))  # float16 values, compared exactly
    table = torch_side.model.model.encoder.embed_positions.weight.float().cpu().numpy()
    np.testing.assert_array_equal(np.array(mlx_side.model.encoder._positional_embedding), table)
    mlx_features, torch_features = _encode_both(mlx_side, torch_side, TINY, "float16")
    assert mlx_side.backend.to_numpy(mlx_features).dtype == np.float32  # converted for the comparison
    assert "float16" in str(mlx_features.dtype) and "float16" in str(torch_features.dtype)
    expected = torch_features.float().cpu().numpy()
    diff = _close(mlx_side.backend.to_numpy(mlx_features), expected, rtol=2e-2, atol=1e-2)
    print(f"float16 encoder max |diff| {diff:.2e}")


def test_mlx_name_refuses_a_parameter_it_does_not_know():
    assert (
        mlx_name("model.decoder.layers.1.encoder_attn.k_proj.weight")
        == "decoder.blocks.1.cross_attn.key.weight"
    )
    assert mlx_name("proj_out.weight") is None
    with pytest.raises(KeyError, match="no mlx-whisper name"):
        mlx_name("model.encoder.layers.0.adapter.weight")


@pytest.fixture
def tiny_quick(monkeypatch):
    monkeypatch.setitem(whisper.CONFIGS, "quick", replace(TINY, new_tokens=4))
    monkeypatch.delenv(checkpoint_env("whisper-tiny"), raising=False)


@pytest.mark.parametrize(
    ("backend", "dtype"),
    [
        (MLX_TEST_BACKEND, "float32"),
        (TORCH_TEST_BACKEND, "float32"),
        (MLX_TEST_BACKEND, "float16"),
        (TORCH_TEST_BACKEND, "float16"),
    ],
)
def test_asv_class_runs_every_method(backend, dtype, tiny_quick):
    figures = run_job_class(WhisperInference, backend, dtype)
    for timing in ("track_encoder_seconds", "track_decode_seconds", "track_transcribe_total_seconds"):
        assert min(figures[timing]["samples"]) > 0
    assert figures["track_decode_tokens_per_s"] > 0
    assert figures["track_peak_memory"] >= 0
    assert whisper.WHISPER_JOB.build(backend, dtype).size.new_tokens == 4
    assert WhisperInference.track_decode_tokens_per_s.unit == "tokens/s"
    assert WhisperInference.track_peak_memory.unit == "bytes"


@pytest.mark.parametrize(
    ("backend", "reason"),
    [
        ("torch-compile", "runs eagerly"),
        (ABSENT_TORCH_BACKEND, ABSENT_REASON),
        ("jax-cpu", "unknown backend"),
    ],
)
def test_compiled_absent_and_unknown_backends_are_skipped_with_a_reason(backend, reason, tiny_quick):
    with pytest.raises(NotImplementedError, match=reason):
        run_job_class(WhisperInference, backend, "float32")


@pytest.mark.parametrize("backend", [MLX_TEST_BACKEND, TORCH_TEST_BACKEND])
def test_full_profile_skips_when_memory_is_short(backend, monkeypatch, tiny_quick):
    monkeypatch.setenv("MTB_PROFILE", "full")
    for cls in (MlxBackend, TorchBackend):
        monkeypatch.setattr(cls, "available_bytes", lambda self: 256 * 1024**2)
    assert CONFIGS["full"].planned_bytes("float32") > 0.8 * 256 * 1024**2
    with pytest.raises(NotImplementedError, match="needs about"):
        run_job_class(WhisperInference, backend, "float32")


# ---------------------------------------------------------------------------------------------------
# A local checkpoint
# ---------------------------------------------------------------------------------------------------
@pytest.fixture
def saved_tiny(tmp_path):
    model = random_torch_model(TINY, seed=7)
    model.save_pretrained(tmp_path / "ok")
    return model, tmp_path / "ok"


def test_a_local_checkpoint_drives_both_sides(saved_tiny, monkeypatch, tiny_quick):
    model, path = saved_tiny
    assert (path / "model.safetensors").is_file()
    monkeypatch.setenv(checkpoint_env("whisper-tiny"), str(path))
    saved = torch_weights(model)
    torch_job = WhisperJob(TORCH_TEST_BACKEND, "float32", CONFIGS["quick"])
    for name, value in torch_weights(torch_job.side.model).items():
        np.testing.assert_array_equal(value, saved[name], err_msg=name)
    assert torch_job.size == replace(TINY, new_tokens=4)  # the checkpoint's sizes, the profile's tokens
    mlx_job = WhisperJob(MLX_TEST_BACKEND, "float32", CONFIGS["quick"])
    layer_norm = "decoder.blocks.1.cross_attn_ln.bias"
    np.testing.assert_array_equal(
        mlx_weights(mlx_job.side.model)[layer_norm],
        saved["model.decoder.layers.1.encoder_attn_layer_norm.bias"],
    )
    _close(np.array(mlx_job.features), torch_job.features.cpu().numpy(), rtol=1e-4, atol=1e-5)


def test_a_checkpoint_missing_a_tensor_or_of_another_model_is_refused(saved_tiny, tmp_path, monkeypatch):
    from safetensors.torch import save_file

    model, path = saved_tiny
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "config.json").write_text((path / "config.json").read_text())
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "proj_out.weight"}
    del state["model.decoder.layers.0.fc1.bias"]
    save_file(state, str(incomplete / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"lacks 1 of .*model\.decoder\.layers\.0\.fc1\.bias"):
        whisper.checkpoint_torch_model(incomplete)

    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "model_type": "bart"}))
    with pytest.raises(CheckpointError, match=r"model_type 'bart'.*'whisper'"):
        whisper.checkpoint_torch_model(path)


def test_a_config_mlx_whisper_cannot_mirror_is_skipped_with_the_reason():
    config = TINY.hf_config()
    config.activation_function = "gelu_new"  # the tanh approximation: another function
    with pytest.raises(NotImplementedError, match="no mlx-whisper equivalent: activation 'gelu_new'"):
        whisper.check_equivalent(config)
