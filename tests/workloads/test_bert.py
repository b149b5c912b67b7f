"""The BERT pairs: one set of weights, the same encoder, the same training step, in both frameworks."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from benchmarks.harness.backends import MlxBackend, TorchBackend, require_backend
from benchmarks.workloads import bert, bert_model, common
from benchmarks.workloads.bert import (
    GRID_CONFIGS,
    NLI_CONFIGS,
    AdamWSettings,
    BertClassificationInference,
    BertClassificationTraining,
    BertNLITraining,
    GridConfig,
    NLIConfig,
    classification_job,
    make_side,
    nli_job,
)
from benchmarks.workloads.bert_model import (
    ARCHS,
    BertArch,
    CheckpointError,
    mlx_bert,
    nli_batch,
    pair_batch,
    torch_classifier,
    torch_nli,
)
from tests.conftest import MLX_TEST_BACKEND, TORCH_TEST_BACKEND
from tests.workloads.helpers import run_job_class

TINY = BertArch("bert-tiny", layers=2, hidden=32, heads=2, ffn=64, vocab=1200, max_positions=64)
SEQ = 24
MLX, TORCH = MLX_TEST_BACKEND, TORCH_TEST_BACKEND


def _place(backend_name, batch):
    backend = require_backend(backend_name)
    inputs = {k: backend.asarray(v, "float32") for k, v in batch.inputs().items()}
    return inputs, backend.asarray(batch.labels, "float32")


def _classifier_pair(settings=None, perturb_norms=False):
    torch_model = torch_classifier(TINY, 2, seed=7)
    if perturb_norms:  # LayerNorm away from MLX's own init (1, 0): only a real copy can match it
        with torch.no_grad():
            for name, tensor in torch_model.named_parameters():
                if "LayerNorm" in name:
                    tensor.copy_(torch.randn_like(tensor) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
    build = lambda: mlx_bert().BertForSequenceClassification(TINY, 2)  # noqa: E731
    mlx_side = make_side(require_backend(MLX), torch_model, build, settings)
    torch_side = make_side(require_backend(TORCH), torch_model, build, settings)
    return mlx_side, torch_side


def _nli_pair(settings):
    torch_model = torch_nli(TINY, 3, seed=7)
    build = lambda: mlx_bert().BertNLI(TINY, 3)  # noqa: E731
    return (
        make_side(require_backend(MLX), torch_model, build, settings),
        make_side(require_backend(TORCH), torch_model, build, settings),
    )


def _mlx_np(value) -> np.ndarray:
    return require_backend(MLX).to_numpy(value)


def _torch_np(value) -> np.ndarray:
    return require_backend(TORCH).to_numpy(value)


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


# ---------------------------------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------------------------------
def test_full_configs_match_the_reference_sizes():
    assert ARCHS["bert-tiny"] == BertArch("bert-tiny", layers=2, hidden=128, heads=2, ffn=512, vocab=30522)
    base, large = ARCHS["bert-base-cased"], ARCHS["bert-large-cased"]
    assert (base.layers, base.hidden, base.heads, base.ffn, base.vocab) == (12, 768, 12, 3072, 28996)
    assert (large.layers, large.hidden, large.heads, large.ffn, large.vocab) == (24, 1024, 16, 4096, 28996)
    # the published parameter counts of the two checkpoints (BertModel with its pooler)
    assert base.encoder_parameters() == 108_310_272
    assert large.encoder_parameters() == 333_579_264
    assert GRID_CONFIGS["full"] == GridConfig(
        ("bert-base-cased", "bert-large-cased"), (16, 64, 256), (128, 512)
    )
    nli = NLI_CONFIGS["full"]
    assert (nli.model, nli.pairs, nli.seq, nli.labels) == ("bert-tiny", 8, 128, 3)
    assert nli.optimizer == AdamWSettings(lr=5e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    assert GRID_CONFIGS["quick"].models == ("bert-tiny",)


def test_parameter_count_formula_matches_transformers():
    model = torch_classifier(ARCHS["bert-tiny"], 2, seed=0)
    assert sum(p.numel() for p in model.bert.parameters()) == ARCHS["bert-tiny"].encoder_parameters()
    config = model.config
    assert (config.hidden_act, config.layer_norm_eps) == ("gelu", 1e-12)
    assert config.hidden_dropout_prob == config.attention_probs_dropout_prob == config.classifier_dropout == 0


def test_synthetic_batches_have_padding_segments_and_labels():
    pairs = pair_batch(16, 32, TINY.vocab, 2, seed=3)
    lengths = pairs.attention_mask.sum(axis=1)
    assert lengths.min() < 32 and lengths.min() >= 8, "variable lengths with padding"
    assert np.all(pairs.input_ids[pairs.attention_mask == 0] == bert_model.PAD_ID)
    assert np.all(pairs.input_ids[:, 0] == bert_model.CLS_ID)
    assert pairs.token_type_ids.max() == 1 and np.all(pairs.token_type_ids[pairs.attention_mask == 0] == 0)
    assert set(np.unique(pairs.labels)) <= {0, 1}
    nli = nli_batch(8, 32, TINY.vocab, seed=3)
    assert nli.input_ids.shape == (16, 32) and nli.labels.shape == (8,) and nli.labels.max() <= 2
    np.testing.assert_array_equal(pair_batch(16, 32, TINY.vocab, 2, seed=3).input_ids, pairs.input_ids)


# ---------------------------------------------------------------------------------------------------
# Parity
# ---------------------------------------------------------------------------------------------------
def test_weights_are_identical_after_transfer_layernorm_included():
    mlx_side, torch_side = _classifier_pair(perturb_norms=True)
    torch_params, mlx_params = torch_side.parameters(), mlx_side.parameters()
    assert mlx_params.keys() == torch_params.keys()
    norms = [name for name in torch_params if "LayerNorm" in name]
    assert len(norms) == 2 * (1 + 2 * TINY.layers)
    for name, value in torch_params.items():
        np.testing.assert_array_equal(mlx_params[name], value, err_msg=name)


def test_encoder_pooled_output_and_logits_match_with_padding():
    mlx_side, torch_side = _classifier_pair(perturb_norms=True)
    batch = pair_batch(6, SEQ, TINY.vocab, 2, seed=11)
    assert (batch.attention_mask == 0).any()
    mlx_inputs, _ = _place(MLX, batch)
    torch_inputs, _ = _place(TORCH, batch)
    mlx_hidden, mlx_pooled = mlx_side.model.bert(**mlx_inputs)
    torch_out = torch_side.model.bert(**torch_inputs)
    torch_hidden = _torch_np(torch_out.last_hidden_state)
    np.testing.assert_allclose(_mlx_np(mlx_hidden), torch_hidden, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_mlx_np(mlx_pooled), _torch_np(torch_out.pooler_output), rtol=1e-4, atol=1e-5)
    mlx_logits, torch_logits = (
        _mlx_np(mlx_side.predict(mlx_inputs)),
        _torch_np(torch_side.predict(torch_inputs)),
    )
    scale = np.abs(torch_logits).max()
    np.testing.assert_allclose(mlx_logits, torch_logits, rtol=1e-4, atol=1e-5 * scale)

    # The mask has an effect: a padded row gives what its unpadded tokens give alone.
    row = int(np.argmin(batch.attention_mask.sum(axis=1)))
    length = int(batch.attention_mask[row].sum())
    alone = {k: v[row : row + 1, :length] for k, v in batch.inputs().items()}
    alone_inputs = {k: require_backend(MLX).asarray(v, "float32") for k, v in alone.items()}
    np.testing.assert_allclose(
        _mlx_np(mlx_side.model.bert(**alone_inputs)[0])[0], torch_hidden[row, :length], rtol=1e-4, atol=1e-5
    )


def test_nli_training_step_gives_the_same_loss_and_parameters():
    mlx_side, torch_side = _nli_pair(AdamWSettings())
    before = torch_side.parameters()
    batch = nli_batch(4, SEQ, TINY.vocab, seed=12)
    mlx_inputs, mlx_labels = _place(MLX, batch)
    torch_inputs, torch_labels = _place(TORCH, batch)
    np.testing.assert_allclose(
        _mlx_np(mlx_side.predict(mlx_inputs)),
        _torch_np(torch_side.predict(torch_inputs)),
        rtol=1e-4,
        atol=1e-6,
    )
    mlx_out = mlx_side.step(mlx_inputs, mlx_labels)
    require_backend(MLX).sync(mlx_out)
    torch_loss = float(torch_side.step(torch_inputs, torch_labels)[0])
    np.testing.assert_allclose(float(mlx_out[0]), torch_loss, rtol=1e-5)
    after_mlx, after_torch = mlx_side.parameters(), torch_side.parameters()
    assert _max_difference(after_mlx, after_torch) < 1e-6  # an AdamW step moves weights by ~lr = 5e-5
    for name in (
        "classifier.weight",
        "bert.embeddings.LayerNorm.weight",
        "bert.encoder.layer.1.output.dense.bias",
    ):
        assert np.abs(after_torch[name] - before[name]).max() > 1e-5, f"{name} must be trained"


def test_loss_falls_over_repeated_steps_on_a_fixed_batch_in_both_frameworks():
    mlx_side, torch_side = _classifier_pair(settings=AdamWSettings(lr=1e-3))
    batch = pair_batch(8, SEQ, TINY.vocab, 2, seed=13)
    mlx_inputs, mlx_labels = _place(MLX, batch)
    torch_inputs, torch_labels = _place(TORCH, batch)
    mlx_losses, torch_losses = [], []
    for _ in range(6):
        mlx_out = mlx_side.step(mlx_inputs, mlx_labels)
        require_backend(MLX).sync(mlx_out)
        mlx_losses.append(float(mlx_out[0]))
        torch_losses.append(float(torch_side.step(torch_inputs, torch_labels)[0]))
    np.testing.assert_allclose(mlx_losses, torch_losses, rtol=1e-4)
    assert all(later < earlier for earlier, later in itertools.pairwise(torch_losses)), torch_losses
    assert torch_losses[-1] < 0.98 * torch_losses[0], torch_losses


# ---------------------------------------------------------------------------------------------------
# asv classes
# ---------------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_profile(monkeypatch):
    monkeypatch.setitem(ARCHS, "bert-tiny", TINY)
    monkeypatch.setitem(NLI_CONFIGS, "quick", NLIConfig(pairs=2, seq=16))
    monkeypatch.setattr(bert, "GRID", GridConfig(("bert-tiny",), (2,), (16,)))


@pytest.mark.parametrize("backend", [MLX, TORCH])
def test_asv_classes_run_every_method(backend, tiny_profile):
    nli = run_job_class(BertNLITraining, backend)
    assert min(nli["track_train_step_seconds"]["samples"]) > 0
    assert nli["track_samples_per_s"] > 0
    assert nli["track_peak_memory"] >= 0
    for cls, timed in (
        (BertClassificationTraining, "track_train_step_seconds"),
        (BertClassificationInference, "track_inference_seconds"),
    ):
        figures = run_job_class(cls, backend, "bert-tiny", 2, 16)
        assert min(figures[timed]["samples"]) > 0
        assert figures["track_samples_per_s"] > 0
        assert figures["track_peak_memory"] >= 0


@pytest.mark.parametrize("backend_class", [MlxBackend, TorchBackend])
def test_a_training_step_synchronises_exactly_once(monkeypatch, tiny_profile, backend_class):
    backend = MLX if backend_class is MlxBackend else TORCH
    job = bert.CLASSIFICATION_TRAINING_JOB.build(backend, "bert-tiny", 2, 16)
    step = bert.CLASSIFICATION_TRAINING_JOB.timings["train_step_seconds"](job)
    synced = []
    original = backend_class.sync
    monkeypatch.setattr(backend_class, "sync", lambda self, out: (synced.append(out), original(self, out)))
    step()
    assert len(synced) == 1
    if backend == MLX:  # the loss, the updated parameters and AdamW's state, evaluated together
        loss, params, state = synced[0]
        assert loss.shape == () and params is not None and "classifier" in params
        assert "step" in state and int(state["step"]) == 2  # the warm-up step and this one


def test_params_are_profile_values():
    assert BertClassificationTraining.params[1:] == [["bert-tiny"], [8, 16], [32, 64]]
    assert BertClassificationInference.param_names == ["backend", "model", "batch", "seq"]


def test_compiled_unknown_backends_and_unknown_models_are_skipped_with_a_reason(tiny_profile):
    for backend, reason in (("torch-compile", "runs eagerly"), ("tpu-jax", "unknown backend")):
        with pytest.raises(NotImplementedError, match=reason):
            run_job_class(BertNLITraining, backend)
        with pytest.raises(NotImplementedError, match=reason):
            run_job_class(BertClassificationTraining, backend, "bert-tiny", 2, 16)
    with pytest.raises(NotImplementedError, match="unknown BERT model 'gpt-2'"):
        run_job_class(BertClassificationInference, MLX, "gpt-2", 2, 16)


@pytest.mark.parametrize("backend_class", [MlxBackend, TorchBackend])
def test_combinations_too_large_for_the_machine_skip_while_small_ones_run(
    monkeypatch, tiny_profile, backend_class
):
    monkeypatch.setattr(backend_class, "available_bytes", lambda self: 256 * 1024**2)
    backend = MLX if backend_class is MlxBackend else TORCH
    big = GridConfig(("bert-large-cased",), (256,), (512,))
    with pytest.raises(
        NotImplementedError, match=r"bert-large-cased training \(256 x 512 tokens\) needs about"
    ):
        classification_job(backend, "bert-large-cased", 256, 512, True, big)
    with pytest.raises(NotImplementedError, match=r"inference .* needs about"):
        classification_job(backend, "bert-base-cased", 64, 512, False, big)
    classification_job(backend, "bert-tiny", 2, 16, True, big).train_step()
    monkeypatch.setattr(backend_class, "available_bytes", lambda self: 1024**2)
    with pytest.raises(NotImplementedError, match="BERT NLI training"):
        nli_job(backend, NLIConfig(pairs=2, seq=16))


def test_memory_estimate_covers_a_measured_training_step():
    from benchmarks.harness.frameworks import mx

    arch = ARCHS["bert-tiny"]
    job = classification_job(MLX, "bert-tiny", 16, 128, True, GRID_CONFIGS["quick"])
    mx.clear_cache()
    resident = mx.get_active_memory()  # weights and AdamW state, kept between steps
    measured = resident + job.peak_bytes()  # MLX's allocator counts every buffer
    estimate = bert_model.training_bytes(arch, 16, 128, materialised_attention=True)
    assert 0.5 * estimate < measured < estimate, (measured, estimate)


# ---------------------------------------------------------------------------------------------------
# Local checkpoints
# ---------------------------------------------------------------------------------------------------
def _save(tmp_path, model, name):
    directory = tmp_path / name
    model.save_pretrained(directory)
    return directory


def test_classification_loads_a_sequence_classification_checkpoint(tmp_path, monkeypatch):
    from transformers import BertForSequenceClassification

    torch.manual_seed(123)
    saved = BertForSequenceClassification(TINY.hf_config(num_labels=3))
    monkeypatch.setenv("MTB_CHECKPOINT_BERT_TINY", str(_save(tmp_path, saved, "cls")))
    expected = common.torch_weights(saved)
    for backend in (MLX, TORCH):
        job = classification_job(backend, "bert-tiny", 2, 16, False, GRID_CONFIGS["quick"])
        assert _max_difference(job.side.parameters(), expected) == 0, backend
        assert job.side.predict(job.inputs).shape[-1] == 3  # the head of the checkpoint: 3 labels


def test_a_bare_encoder_checkpoint_fills_bert_and_keeps_the_seeded_head(tmp_path, monkeypatch):
    from transformers import BertModel

    torch.manual_seed(321)
    encoder = BertModel(TINY.hf_config(), add_pooling_layer=False)  # "embeddings...", no pooler, no head
    monkeypatch.setenv("MTB_CHECKPOINT_BERT_TINY", str(_save(tmp_path, encoder, "encoder")))
    job = classification_job(MLX, "bert-tiny", 2, 16, False, GRID_CONFIGS["quick"])  # no step taken
    loaded = job.side.parameters()
    for name, value in common.torch_weights(encoder).items():
        np.testing.assert_array_equal(loaded["bert." + name], value, err_msg=name)
    seeded = common.torch_weights(torch_classifier(TINY, 2, seed=bert.WEIGHT_SEED))
    for name in ("classifier.weight", "bert.pooler.dense.weight"):
        np.testing.assert_array_equal(loaded[name], seeded[name], err_msg=name)

    # The NLI encoder too (its head is its own); its job has taken one warm-up AdamW step, which moves
    # every weight by at most lr (the first bias-corrected step is lr * sign(gradient)) plus its decay.
    config = NLIConfig(pairs=2, seq=16)
    lr, decay = config.optimizer.lr, config.optimizer.weight_decay
    nli = nli_job(TORCH, config).side.parameters()
    for name, value in common.torch_weights(encoder).items():
        moved = np.abs(nli["bert." + name] - value).max()
        assert moved <= lr * (1.001 + decay * np.abs(value).max()), (
            f"{name} moved {moved} from the checkpoint"
        )


def test_broken_checkpoints_raise_a_clear_error(tmp_path, monkeypatch):
    from safetensors.numpy import save_file

    model = torch_classifier(TINY, 2, seed=1)
    directory = _save(tmp_path, model, "broken")
    weights = common.torch_weights(model)
    del weights["bert.encoder.layer.1.attention.self.key.weight"]
    (directory / "model.safetensors").unlink()
    save_file(weights, str(directory / "model.safetensors"))
    monkeypatch.setenv("MTB_CHECKPOINT_BERT_TINY", str(directory))
    with pytest.raises(CheckpointError, match=r"lacks 1 .*layer\.1\.attention\.self\.key\.weight"):
        classification_job(MLX, "bert-tiny", 2, 16, False, GRID_CONFIGS["quick"])

    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "model_type": "roberta"}))
    with pytest.raises(CheckpointError, match="model_type 'roberta'; this workload expects 'bert'"):
        classification_job(MLX, "bert-tiny", 2, 16, False, GRID_CONFIGS["quick"])
    (directory / "config.json").write_text(json.dumps({**config, "hidden_act": "gelu_new"}))
    with pytest.raises(CheckpointError, match="hidden_act='gelu_new'"):
        nli_job(MLX, NLIConfig(pairs=2, seq=16))


def test_legacy_and_bare_checkpoint_names_map_to_the_workload_layout():
    name = bert_model.checkpoint_name
    assert name("embeddings.LayerNorm.gamma") == "bert.embeddings.LayerNorm.weight"
    assert name("bert.encoder.layer.0.output.LayerNorm.beta") == "bert.encoder.layer.0.output.LayerNorm.bias"
    assert name("pooler.dense.weight") == "bert.pooler.dense.weight"
    assert name("classifier.bias") == "classifier.bias"
    assert name("cls.predictions.bias") == "cls.predictions.bias"
