"""LLM generation: one set of weights, the same logits, the same greedy tokens, a correct KV cache, and
local checkpoints loaded (or refused with a clear message)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.harness.backends import require_backend
from benchmarks.harness.frameworks import torch
from benchmarks.workloads import llm_generation as llm
from benchmarks.workloads.common import mlx_weights, torch_weights
from tests.conftest import MLX_TEST_BACKEND, TORCH_TEST_BACKEND
from tests.workloads.helpers import run_job_class

TINY = dict(num_hidden_layers=2, initializer_range=0.2)  # peaked logits: no argmax near-ties


def _config(model: str, **overrides):
    return llm.hf_config(llm.ARCHITECTURES[model], shrink=True, overrides={**TINY, **overrides})


def _generators(config, dtype="float32"):
    torch_backend, mlx_backend = require_backend(TORCH_TEST_BACKEND), require_backend(MLX_TEST_BACKEND)
    return (
        (torch_backend, llm.make_generator(torch_backend, config, dtype)),
        (mlx_backend, llm.make_generator(mlx_backend, config, dtype)),
    )


def _tokens(pair, prompt, new):
    backend, generator = pair
    return backend.to_numpy(generator.generate(backend.asarray(prompt, "int64"), new))


def _logits(pair, tokens):
    backend, generator = pair
    return backend.to_numpy(generator.logits(backend.asarray(tokens, "int64")))


def test_full_architectures_have_the_published_parameter_counts():
    tinyllama = llm.hf_config(llm.ARCHITECTURES["tinyllama"], shrink=False)
    phi2 = llm.hf_config(llm.ARCHITECTURES["phi-2"], shrink=False)
    assert llm.parameter_count(tinyllama) == 1_100_048_384
    assert llm.parameter_count(phi2) == 2_779_683_840
    assert tinyllama.num_key_value_heads == 4
    assert llm.rope_settings(phi2) == {"rope_theta": 10000.0, "partial_rotary_factor": 0.4}


# Phi has a biased output head of its own: it is never tied.
MODELS_AND_TYING = [("tinyllama", False), ("tinyllama", True), ("phi-2", False)]


@pytest.mark.parametrize(("model", "tied"), MODELS_AND_TYING)
def test_parameter_count_matches_the_built_model(model, tied):
    config = _config(model, tie_word_embeddings=tied)
    built = llm.build_torch_model(config)
    assert llm.parameter_count(config) == sum(p.numel() for p in built.parameters())


@pytest.mark.parametrize(("model", "tied"), MODELS_AND_TYING)
def test_same_weights_same_logits_same_greedy_tokens(model, tied):
    config = _config(model, tie_word_embeddings=tied)
    pair_torch, pair_mlx = _generators(config)
    source = torch_weights(pair_torch[1].model)
    copied = mlx_weights(pair_mlx[1].model)
    if tied:
        source.pop("lm_head.weight")
    assert set(copied) == set(source)
    for name, value in source.items():
        np.testing.assert_array_equal(copied[name], value, err_msg=name)

    prompt = llm.make_prompt(config, 24)
    torch_logits, mlx_logits = _logits(pair_torch, prompt), _logits(pair_mlx, prompt)
    scale = np.abs(torch_logits).max()
    np.testing.assert_allclose(mlx_logits, torch_logits, rtol=0, atol=2e-5 * scale)

    torch_tokens, mlx_tokens = _tokens(pair_torch, prompt, 16), _tokens(pair_mlx, prompt, 16)
    assert torch_tokens.shape == (1, 16)
    np.testing.assert_array_equal(mlx_tokens, torch_tokens)


@pytest.mark.parametrize("model", ["tinyllama", "phi-2"])
def test_the_kv_cache_loop_equals_greedy_decoding_without_a_cache(model):
    config = _config(model)
    for pair in _generators(config):
        prompt = llm.make_prompt(config, 12)
        cached = _tokens(pair, prompt, 8)
        sequence = prompt
        for _ in range(8):
            next_token = _logits(pair, sequence)[:, -1].argmax(-1)[:, None]
            sequence = np.concatenate([sequence, next_token], axis=1)
        np.testing.assert_array_equal(cached, sequence[:, 12:], err_msg=pair[0].name)


def test_rope_settings_reach_mlx_lm():
    config = _config("phi-2", partial_rotary_factor=0.5, rope_theta=500.0)
    args = llm.mlx_model_args(config)
    assert (args.partial_rotary_factor, args.rope_theta) == (0.5, 500.0)
    pair_torch, pair_mlx = _generators(config)
    prompt = llm.make_prompt(config, 16)
    torch_logits, mlx_logits = _logits(pair_torch, prompt), _logits(pair_mlx, prompt)
    np.testing.assert_allclose(mlx_logits, torch_logits, rtol=0, atol=2e-5 * np.abs(torch_logits).max())


def test_bfloat16_generation_stays_close_to_the_other_framework():
    config = _config("tinyllama")
    pair_torch, pair_mlx = _generators(config, "bfloat16")
    prompt = llm.make_prompt(config, 24)
    torch_logits, mlx_logits = _logits(pair_torch, prompt), _logits(pair_mlx, prompt)
    assert pair_torch[1].model.dtype.__repr__().endswith("bfloat16")
    assert str(pair_mlx[1].model.parameters()["model"]["norm"]["weight"].dtype) == "mlx.core.bfloat16"
    # bfloat16 keeps 8 bits of mantissa: the two frameworks round differently inside matmuls
    assert np.abs(mlx_logits - torch_logits).max() < 0.05 * np.abs(torch_logits).max()
    agree = (mlx_logits.argmax(-1) == torch_logits.argmax(-1)).mean()
    assert agree >= 0.9


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_both_frameworks_hold_the_same_rounded_weights(dtype):
    config = _config("phi-2")
    (_, torch_side), (_, mlx_side) = _generators(config, dtype)
    held = mlx_weights(mlx_side.model)
    for name, tensor in torch_side.model.state_dict().items():
        np.testing.assert_array_equal(held[name], tensor.float().cpu().numpy(), err_msg=name)
    assert str(mlx_side.model.parameters()["lm_head"]["weight"].dtype) == f"mlx.core.{dtype}"


@pytest.mark.parametrize("backend", [MLX_TEST_BACKEND, TORCH_TEST_BACKEND])
def test_benchmark_class_runs_on_the_quick_profile(backend, monkeypatch):
    monkeypatch.setenv("MTB_PROFILE", "quick")
    figures = run_job_class(llm.LLMGeneration, backend, "tinyllama", "float32", "eager")
    for timing in ("track_generate_seconds", "track_time_to_first_token_seconds"):
        assert min(figures[timing]["samples"]) > 0
    assert figures["track_prefill_tokens_per_s"] > 0
    assert figures["track_decode_tokens_per_s"] > 0
    # the quick profile's weights (66 MB) fit in this CPU's cache: the fraction may pass 1 here
    assert figures["track_decode_bandwidth_fraction"] > 0
    config = llm.hf_config(llm.ARCHITECTURES["tinyllama"], shrink=True)
    assert figures["track_weights_memory"] == 4 * llm.parameter_count(config)
    kv_bytes = 4 * 2 * config.num_hidden_layers * (64 + 16) * config.num_key_value_heads * 32
    assert figures["track_generate_peak_memory"] >= 0.9 * kv_bytes
    job = llm.LLM_JOB.build(backend, "tinyllama", "float32", "eager")
    assert job.backend.to_numpy(job.generate()).shape == (1, llm.CONFIGS["quick"].new_tokens)


@pytest.mark.parametrize(
    ("backend", "dtype", "decode", "message"),
    [
        ("torch-compile", "float32", "eager", "runs eagerly"),
        ("no-such-backend", "float32", "eager", "unknown backend"),
        ("torch-cpu", "float16", "eager", "quick profile runs"),
        ("torch-cpu", "float32", "graph", "needs a CUDA device"),
        (MLX_TEST_BACKEND, "float32", "graph", "mlx-lm does not compile its decode step"),
    ],
)
def test_what_cannot_run_is_skipped_with_a_reason(backend, dtype, decode, message, monkeypatch):
    monkeypatch.setenv("MTB_PROFILE", "quick")
    with pytest.raises(NotImplementedError, match=message):
        run_job_class(llm.LLMGeneration, backend, "phi-2", dtype, decode)


@pytest.mark.parametrize("model", ["tinyllama", "phi-2"])
def test_the_static_cache_step_decodes_the_same_greedy_tokens(model):
    """The captured decode variant's step (static cache, fixed-shape inputs) run eagerly: the same
    tokens as transformers' dynamic cache loop, twice in a row (the cache is reset in place)."""
    config = _config(model)
    backend = require_backend(TORCH_TEST_BACKEND)
    dynamic = llm.make_generator(backend, config, "float32")
    static = llm.TorchGraphGenerator(
        llm.build_torch_model(config), backend, "float32", max_tokens=40, capture=False
    )
    prompt = backend.asarray(llm.make_prompt(config, 24), "int64")
    expected = backend.to_numpy(dynamic.generate(prompt, 16))
    for _ in range(2):
        np.testing.assert_array_equal(backend.to_numpy(static.generate(prompt, 16)), expected)


def test_the_captured_decode_step_decodes_the_same_tokens_on_cuda():
    """decode=graph as the job runs it (captured once, replayed per token, twice in a row) against the
    dynamic-cache loop; needs a CUDA device (MTB_TEST_BACKENDS=mlx-gpu,torch-cuda on a GPU host)."""
    if TORCH_TEST_BACKEND != "torch-cuda":
        pytest.skip("decode=graph captures a CUDA graph: run with MTB_TEST_BACKENDS=...,torch-cuda on a GPU")
    config = _config("tinyllama")
    backend = require_backend(TORCH_TEST_BACKEND)
    dynamic = llm.make_generator(backend, config, "float32")
    captured = llm.make_generator(backend, config, "float32", decode="graph", max_tokens=40)
    prompt = backend.asarray(llm.make_prompt(config, 24), "int64")
    expected = backend.to_numpy(dynamic.generate(prompt, 16))
    for _ in range(2):
        np.testing.assert_array_equal(backend.to_numpy(captured.generate(prompt, 16)), expected)
    assert captured.graph is not None


def test_a_missing_mlx_lm_skips_the_mlx_side_with_a_reason(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mlx_lm", None)  # what an MLX release without an mlx-lm looks like
    with pytest.raises(NotImplementedError, match="needs mlx_lm, which cannot be imported"):
        llm.GenerationJob(MLX_TEST_BACKEND, "tinyllama", "float32", "eager", llm.CONFIGS["quick"])


def test_mlx_lm_before_0_27_calling_convention_is_supported():
    """mlx-lm up to 0.26 (the one for MLX 0.26.5-0.29) declares phi's inner model as (x, mask, cache)."""
    from benchmarks.harness.frameworks import mx

    class Inner:
        def __call__(self, x, mask, cache):
            assert mask is None
            return mx.zeros((1, 3, 4))

    class Outer:
        model = Inner()

        def lm_head(self, hidden):
            return hidden

    generator = llm.MlxGenerator(Outer(), require_backend(MLX_TEST_BACKEND), "float32")
    assert generator._last_logits(mx.zeros((1, 3), dtype=mx.int32), cache=None).shape == (1, 1, 4)


def test_a_model_too_large_for_the_memory_is_skipped_with_a_reason(monkeypatch):
    from benchmarks.harness.backends import get_backend

    monkeypatch.setattr(type(get_backend("torch-cpu")), "available_bytes", lambda self: 2 * 1024**3)
    with pytest.raises(NotImplementedError, match=r"phi-2 generation in float32 needs about 10\.\d GiB"):
        llm.GenerationJob("torch-cpu", "phi-2", "float32", "eager", llm.CONFIGS["full"])


# ---------------------------------------------------------------------------------------------------
# Local checkpoints
# ---------------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_checkpoint(tmp_path):
    """A small Llama checkpoint in the Hugging Face layout, written by transformers itself."""
    config = _config("tinyllama", vocab_size=512)
    model = llm.build_torch_model(config, seed=7)
    model.save_pretrained(tmp_path / "tiny-llama")
    return tmp_path / "tiny-llama", model


def test_a_local_checkpoint_feeds_both_frameworks(tiny_checkpoint, monkeypatch):
    path, saved = tiny_checkpoint
    assert (path / "model.safetensors").is_file()
    monkeypatch.setenv("MTB_CHECKPOINT_TINYLLAMA", str(path))
    checkpoint = llm.checkpoint_for(llm.ARCHITECTURES["tinyllama"])
    expected = torch_weights(saved)
    assert set(checkpoint.weights) == set(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(checkpoint.weights[name], value, err_msg=name)

    config = llm.hf_config(llm.ARCHITECTURES["tinyllama"], shrink=False, overrides=checkpoint.config)
    assert config.vocab_size == 512 and config.num_hidden_layers == 2
    prompt = llm.make_prompt(config, 10)
    tokens = []
    for name in (TORCH_TEST_BACKEND, MLX_TEST_BACKEND):
        backend = require_backend(name)
        generator = llm.make_generator(backend, config, "float32", checkpoint, seed=123)
        tokens.append(_tokens((backend, generator), prompt, 6))
    import torch

    with torch.inference_mode():
        reference = saved.generate(
            torch.from_numpy(prompt), max_new_tokens=6, min_new_tokens=6, do_sample=False, eos_token_id=None
        )
    np.testing.assert_array_equal(tokens[0], reference[:, 10:].numpy())
    np.testing.assert_array_equal(tokens[1], tokens[0])


def test_the_job_uses_the_checkpoint_named_in_the_environment(tiny_checkpoint, monkeypatch):
    path, _ = tiny_checkpoint
    monkeypatch.setenv("MTB_CHECKPOINT_TINYLLAMA", str(path))
    job = llm.GenerationJob("torch-cpu", "tinyllama", "float32", "eager", llm.CONFIGS["quick"])
    assert job.generator.model.config.vocab_size == 512


def test_missing_directory_and_config_are_named(tmp_path, monkeypatch):
    from benchmarks.workloads.checkpoints import CheckpointError

    monkeypatch.setenv("MTB_CHECKPOINT_TINYLLAMA", str(tmp_path / "nowhere"))
    with pytest.raises(CheckpointError, match=r"nowhere does not exist.*config\.json"):
        llm.checkpoint_for(llm.ARCHITECTURES["tinyllama"])
    monkeypatch.setenv("MTB_CHECKPOINT_TINYLLAMA", str(tmp_path))
    with pytest.raises(CheckpointError, match=r"config\.json is missing"):
        llm.checkpoint_for(llm.ARCHITECTURES["tinyllama"])


def test_a_checkpoint_of_another_architecture_is_refused(tiny_checkpoint, monkeypatch):
    from benchmarks.workloads.checkpoints import CheckpointError

    path, _ = tiny_checkpoint
    monkeypatch.setenv("MTB_CHECKPOINT_PHI_2", str(path))
    with pytest.raises(CheckpointError, match=r"model_type 'llama'; this workload expects 'phi'"):
        llm.checkpoint_for(llm.ARCHITECTURES["phi-2"])


def test_an_incomplete_checkpoint_names_the_file_and_the_missing_keys(tiny_checkpoint, monkeypatch):
    from safetensors.torch import load_file, save_file

    from benchmarks.workloads.checkpoints import CheckpointError

    path, _ = tiny_checkpoint
    file = path / "model.safetensors"
    state = load_file(file)
    del state["model.layers.1.mlp.down_proj.weight"]
    save_file(state, file, metadata={"format": "pt"})
    monkeypatch.setenv("MTB_CHECKPOINT_TINYLLAMA", str(path))
    with pytest.raises(CheckpointError, match=r"model\.safetensors lacks 1 of .*layers\.1\.mlp\.down_proj"):
        llm.checkpoint_for(llm.ARCHITECTURES["tinyllama"])


def test_weights_of_the_wrong_shape_are_named(tiny_checkpoint, monkeypatch):
    import json

    from benchmarks.workloads.checkpoints import CheckpointError

    path, _ = tiny_checkpoint
    config = json.loads((path / "config.json").read_text())
    config["intermediate_size"] = 128
    (path / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("MTB_CHECKPOINT_TINYLLAMA", str(path))
    with pytest.raises(CheckpointError, match=r"wrong shape .*mlp\.(gate|up|down)_proj"):
        llm.checkpoint_for(llm.ARCHITECTURES["tinyllama"])


def test_sharded_and_pickled_checkpoints_load_and_a_missing_shard_is_named(tiny_checkpoint, tmp_path):
    import torch

    from benchmarks.workloads.checkpoints import CheckpointError, read_weights

    _, saved = tiny_checkpoint
    sharded = tmp_path / "sharded"
    saved.save_pretrained(sharded, max_shard_size="200KB")
    shards = sorted(sharded.glob("model-*.safetensors"))
    assert len(shards) > 1
    file, weights = read_weights(sharded)
    assert file.name == "model.safetensors.index.json" and set(weights) >= {"model.norm.weight"}

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    torch.save(saved.state_dict(), pickled / "pytorch_model.bin")
    file, weights = read_weights(pickled)
    np.testing.assert_array_equal(weights["model.norm.weight"], saved.model.norm.weight.detach().numpy())

    shards[0].unlink()
    with pytest.raises(CheckpointError, match=rf"{shards[0].name} is missing: .*index\.json lists it"):
        read_weights(sharded)
    with pytest.raises(CheckpointError, match=r"has no weights: expected one of model\.safetensors"):
        read_weights(tmp_path)


@pytest.mark.parametrize("mapped", [False, True])
@pytest.mark.parametrize(("model", "tied"), MODELS_AND_TYING)
def test_kept_weights_rebuild_the_same_model_without_drawing_them(model, tied, mapped, tmp_path, monkeypatch):
    from benchmarks.workloads import common

    monkeypatch.setenv("MTB_INPUT_CACHE", str(tmp_path))
    config = _config(model, tie_word_embeddings=tied)
    drawn = llm.build_torch_model(config, seed=3)
    assert len(list(tmp_path.glob("weights-*.pt"))) == 1
    draws: list[int] = []
    monkeypatch.setattr(common.torch, "manual_seed", lambda seed: draws.append(seed))
    loaded = llm.build_torch_model(config, seed=3, mapped=mapped)
    assert draws == [], "the kept weights must be loaded, not drawn again"
    monkeypatch.undo()
    monkeypatch.setenv("MTB_INPUT_CACHE", str(tmp_path))
    assert torch_weights(loaded).keys() == torch_weights(drawn).keys()
    for name, value in torch_weights(drawn).items():
        np.testing.assert_array_equal(torch_weights(loaded)[name], value, err_msg=name)
    assert (loaded.lm_head.weight is loaded.model.embed_tokens.weight) == tied
    # buffers made in __init__ (rotary frequencies) are not in the file: the logits show they are right
    tokens = torch.from_numpy(llm.make_prompt(config, 12))
    with torch.inference_mode():
        np.testing.assert_array_equal(
            loaded(input_ids=tokens).logits.numpy(), drawn(input_ids=tokens).logits.numpy()
        )
    # another seed is another file, drawn afresh
    other = llm.build_torch_model(config, seed=4)
    assert len(list(tmp_path.glob("weights-*.pt"))) == 2
    assert not torch.equal(other.lm_head.weight, drawn.lm_head.weight)


def test_training_a_mapped_model_never_changes_the_kept_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("MTB_INPUT_CACHE", str(tmp_path))
    config = _config("tinyllama")
    drawn = torch_weights(llm.build_torch_model(config, seed=5))
    loaded = llm.build_torch_model(config, seed=5, mapped=True)
    with torch.no_grad():
        for parameter in loaded.parameters():
            parameter.add_(1.0)  # as an optimizer step does, in place
    assert not np.array_equal(torch_weights(loaded)["model.norm.weight"], drawn["model.norm.weight"])
    again = torch_weights(llm.build_torch_model(config, seed=5))
    for name, value in drawn.items():
        np.testing.assert_array_equal(again[name], value, err_msg=name)


def test_a_model_used_as_built_holds_its_own_memory_and_a_mapped_one_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("MTB_INPUT_CACHE", str(tmp_path))
    config = _config("tinyllama")
    llm.build_torch_model(config, seed=6)
    (kept,) = tmp_path.glob("weights-*.pt")
    own = llm.build_torch_model(config, seed=6, mapped=False)
    mapped = llm.build_torch_model(config, seed=6, mapped=True)
    before = own.model.norm.weight.detach().clone()
    assert torch.equal(mapped.model.norm.weight, before)
    with open(kept, "r+b") as handle:  # the file's pages change under the mapping, not under own memory
        handle.write(b"\0" * kept.stat().st_size)
    assert torch.equal(own.model.norm.weight, before)
    assert not torch.equal(mapped.model.norm.weight, before)


def test_a_generation_job_says_where_its_builds_time_went():
    job = llm.GenerationJob(TORCH_TEST_BACKEND, "tinyllama", "float32", "eager", llm.CONFIGS["quick"])
    assert set(job.build_phases) == {"model", "first generate"}
    assert all(seconds > 0 for seconds in job.build_phases.values())
