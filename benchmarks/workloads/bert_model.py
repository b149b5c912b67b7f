"""BERT in both frameworks from one set of weights: the architectures, the MLX encoder, the weight transfer,
local checkpoints, synthetic batches and the memory estimate shared by the BERT workloads (bert.py).

The torch side is transformers' own ``BertModel`` / ``BertForSequenceClassification``, built from a
``BertConfig`` with random weights (Hugging Face's init: normal(0, 0.02), LayerNorm weight 1 and bias 0)
under a fixed torch seed.  mlx-lm ships no BERT, so the MLX encoder is written here; its modules carry the
Hugging Face names (``bert.embeddings.LayerNorm``, ``bert.encoder.layer.0.attention.self.query``, ...) so
the torch state dict loads into it strictly, unrenamed, with ``common.load_mlx``: every weight, LayerNorm
included, is copied from torch, never initialised a second time (the published version initialised
LayerNorm differently per side).

The numerics are the same by construction: exact erf GELU on both sides (``hidden_act="gelu"``; MLX's
``nn.gelu``), LayerNorm eps 1e-12 (``nn.LayerNorm`` is ``mx.fast.layer_norm``), attention scaled by
1/sqrt(head dim) with the padded keys masked out (a boolean mask in ``mx.fast.scaled_dot_product_attention``;
torch's SDPA gets the equivalent mask from transformers), embeddings summed in the same order, every dropout
probability 0.

Checkpoints: ``MTB_CHECKPOINT_<MODEL>`` (``MTB_CHECKPOINT_BERT_TINY``, ``MTB_CHECKPOINT_BERT_BASE_CASED``,
``MTB_CHECKPOINT_BERT_LARGE_CASED``) points the model of that name at a local Hugging Face BERT directory;
its config.json then decides the architecture.  See ``load_user_checkpoint`` for the key layouts accepted.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from benchmarks.harness.frameworks import mlx_nn, mx, torch
from benchmarks.workloads import checkpoints
from benchmarks.workloads.checkpoints import CheckpointError
from benchmarks.workloads.common import seeded_model

# Token ids of the BERT vocabularies: [PAD], [CLS], [SEP]; ordinary word pieces from 1000 on in both.
PAD_ID, CLS_ID, SEP_ID, FIRST_WORD_ID = 0, 101, 102, 1000
FLOAT32_BYTES = 4
# Margin on the activations counted in training_bytes / inference_bytes.  Measured peaks: torch's CUDA
# allocator 0.7-0.8 of the count (H100, bert-base and bert-large, batch 16-256 x 128-512); MLX's CPU
# allocator and torch's CPU RSS up to 1.3x and 1.45x at bert-tiny sizes, where fixed costs weigh more.
MEMORY_SAFETY = 1.5


@dataclass(frozen=True)
class BertArch:
    name: str
    layers: int
    hidden: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int = 512
    type_vocab: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02

    def hf_config(self, num_labels: int = 2) -> Any:
        from transformers import BertConfig

        return BertConfig(
            vocab_size=self.vocab,
            hidden_size=self.hidden,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            intermediate_size=self.ffn,
            hidden_act="gelu",  # exact erf GELU, as MLX's nn.gelu
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            classifier_dropout=0.0,
            max_position_embeddings=self.max_positions,
            type_vocab_size=self.type_vocab,
            layer_norm_eps=self.layer_norm_eps,
            initializer_range=self.initializer_range,
            pad_token_id=PAD_ID,
            num_labels=num_labels,
            attn_implementation="sdpa",
        )

    @classmethod
    def from_hf(cls, name: str, config: dict[str, Any], source: Path) -> BertArch:
        """The architecture of a checkpoint's config.json; what the MLX encoder cannot compute is refused."""
        from transformers import BertConfig

        unsupported = {
            "hidden_act": (config.get("hidden_act", "gelu"), "gelu"),
            "position_embedding_type": (config.get("position_embedding_type", "absolute"), "absolute"),
            "is_decoder": (config.get("is_decoder", False), False),
        }
        for key, (value, supported) in unsupported.items():
            if value != supported:
                raise CheckpointError(
                    f"{source / 'config.json'} has {key}={value!r}; the BERT workloads compute "
                    f"{supported!r} only"
                )
        hf = BertConfig.from_dict(config)
        return cls(
            name=name,
            layers=hf.num_hidden_layers,
            hidden=hf.hidden_size,
            heads=hf.num_attention_heads,
            ffn=hf.intermediate_size,
            vocab=hf.vocab_size,
            max_positions=hf.max_position_embeddings,
            type_vocab=hf.type_vocab_size,
            layer_norm_eps=hf.layer_norm_eps,
            initializer_range=hf.initializer_range,
        )

    def encoder_parameters(self, pooler: bool = True) -> int:
        h, f = self.hidden, self.ffn
        embeddings = (self.vocab + self.max_positions + self.type_vocab) * h + 2 * h
        layer = 4 * (h * h + h) + (h * f + f) + (f * h + h) + 2 * 2 * h
        return embeddings + self.layers * layer + (h * h + h if pooler else 0)


ARCHS = {
    "bert-tiny": BertArch("bert-tiny", layers=2, hidden=128, heads=2, ffn=512, vocab=30522),
    "bert-base-cased": BertArch("bert-base-cased", layers=12, hidden=768, heads=12, ffn=3072, vocab=28996),
    "bert-large-cased": BertArch("bert-large-cased", layers=24, hidden=1024, heads=16, ffn=4096, vocab=28996),
}


def require_transformers() -> None:
    """The torch side is transformers' BERT: without it the workload is skipped with the reason."""
    try:
        import transformers  # noqa: F401
    except ImportError as exc:
        raise NotImplementedError(
            f"the BERT workloads build their torch side with transformers: {exc}"
        ) from None


# ---------------------------------------------------------------------------------------------------
# Synthetic data: prepared in NumPy once, outside every timed region, identical for both frameworks
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenBatch:
    input_ids: np.ndarray  # (rows, seq) int64, PAD_ID after each row's length
    attention_mask: np.ndarray  # 1 on real tokens, 0 on padding
    token_type_ids: np.ndarray  # 0 for the first segment, 1 for the second; 0 on padding
    labels: np.ndarray  # (examples,) int64

    def inputs(self) -> dict[str, np.ndarray]:
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "token_type_ids": self.token_type_ids,
        }


def _words(rng: np.random.Generator, vocab: int, count: int) -> np.ndarray:
    low = FIRST_WORD_ID if vocab > FIRST_WORD_ID else SEP_ID + 1  # a small test vocabulary
    return rng.integers(low, vocab, size=count)


def _lengths(rng: np.random.Generator, rows: int, seq: int, shortest: int) -> np.ndarray:
    """Row lengths from a quarter of the sequence to all of it: every batch has padding to mask."""
    return rng.integers(max(shortest, seq // 4), seq + 1, size=rows)


def sentence_batch(
    sentences: int, seq: int, vocab: int, num_labels: int, seed: int, label_rows: int | None = None
) -> TokenBatch:
    """Single sentences ``[CLS] words [SEP] [PAD]...``, all of segment 0."""
    rng = np.random.default_rng(seed)
    ids = np.full((sentences, seq), PAD_ID, dtype=np.int64)
    for row, length in enumerate(_lengths(rng, sentences, seq, shortest=3)):
        ids[row, :length] = [CLS_ID, *_words(rng, vocab, length - 2), SEP_ID]
    labels = rng.integers(0, num_labels, size=label_rows or sentences)
    return TokenBatch(ids, (ids != PAD_ID).astype(np.int64), np.zeros_like(ids), labels)


def pair_batch(batch: int, seq: int, vocab: int, num_labels: int, seed: int) -> TokenBatch:
    """Sentence pairs packed as ``[CLS] a [SEP] b [SEP] [PAD]...``, b in segment 1."""
    rng = np.random.default_rng(seed)
    ids = np.full((batch, seq), PAD_ID, dtype=np.int64)
    types = np.zeros_like(ids)
    for row, length in enumerate(_lengths(rng, batch, seq, shortest=5)):
        first = int(rng.integers(1, length - 3))  # words in segment a; b gets the rest (at least one)
        second = length - 3 - first
        words = _words(rng, vocab, first + second)
        ids[row, :length] = [CLS_ID, *words[:first], SEP_ID, *words[first:], SEP_ID]
        types[row, first + 2 : length] = 1
    labels = rng.integers(0, num_labels, size=batch)
    return TokenBatch(ids, (ids != PAD_ID).astype(np.int64), types, labels)


def nli_batch(pairs: int, seq: int, vocab: int, seed: int, num_labels: int = 3) -> TokenBatch:
    """Premises (rows 0..pairs-1) then hypotheses (rows pairs..2*pairs-1), one label per pair."""
    return sentence_batch(2 * pairs, seq, vocab, num_labels, seed, label_rows=pairs)


# ---------------------------------------------------------------------------------------------------
# Memory estimate (require_memory): float32 weights, AdamW state and the activations of one call
# ---------------------------------------------------------------------------------------------------
def _attention_floats(arch: BertArch, batch: int, seq: int) -> int:
    return batch * arch.heads * seq * seq


def training_bytes(arch: BertArch, batch: int, seq: int, materialised_attention: bool) -> float:
    """A planning estimate of one training step: weights, gradients, AdamW's two moments and their new
    values (written before the old ones are freed); per token and layer, the activations kept for the
    backward pass (q, k, v, context, two dense outputs, residual sums and LayerNorm outputs: ~11 x hidden;
    the FFN's values before and after GELU: 2 x ffn); and, where attention is materialised (MLX's
    attention gradient), every layer's probabilities plus a few score-sized temporaries of one layer's
    backward.  torch's SDPA kernels keep no (seq x seq) matrix, on the CPU too."""
    tokens = batch * seq
    activations = arch.layers * tokens * (11 * arch.hidden + 2 * arch.ffn)
    if materialised_attention:
        activations += (arch.layers + 3) * _attention_floats(arch, batch, seq)
    return FLOAT32_BYTES * (6 * arch.encoder_parameters() + MEMORY_SAFETY * activations)


def inference_bytes(arch: BertArch, batch: int, seq: int, materialised_attention: bool) -> float:
    """Weights plus one layer's working set (nothing is kept for a backward pass): the FFN's values
    before and after GELU and a few hidden-sized tensors per token, and the scores and probabilities
    where attention is materialised."""
    activations = batch * seq * (6 * arch.hidden + 2 * arch.ffn)
    if materialised_attention:
        activations += 2 * _attention_floats(arch, batch, seq)
    return FLOAT32_BYTES * (arch.encoder_parameters() + MEMORY_SAFETY * activations)


# ---------------------------------------------------------------------------------------------------
# Torch side: transformers' BERT, seeded
# ---------------------------------------------------------------------------------------------------
def torch_classifier(arch: BertArch, num_labels: int, seed: int, mapped: bool = False) -> Any:
    """transformers' BERT classifier with seeded weights (``mapped``: see ``seeded_model``)."""
    from transformers import BertForSequenceClassification

    return seeded_model(BertForSequenceClassification, arch.hf_config(num_labels), seed, mapped)


@functools.cache
def _torch_nli_class() -> type:
    from transformers import BertModel

    class TorchBertNLI(torch.nn.Module):
        """Siamese encoder: both sentences through ``bert``, mean pooled, [u, v, |u-v|, u*v] -> labels."""

        def __init__(self, config: Any, num_labels: int) -> None:
            super().__init__()
            self.bert = BertModel(config, add_pooling_layer=False)  # mean pooling: no pooler to train
            self.classifier = torch.nn.Linear(4 * config.hidden_size, num_labels)
            torch.nn.init.normal_(self.classifier.weight, std=config.initializer_range)
            torch.nn.init.zeros_(self.classifier.bias)

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1)
            u, v = pooled.chunk(2, dim=0)
            return self.classifier(torch.cat([u, v, (u - v).abs(), u * v], dim=-1))

    return TorchBertNLI


def torch_nli(arch: BertArch, num_labels: int, seed: int) -> Any:
    torch.manual_seed(seed)
    return _torch_nli_class()(arch.hf_config(), num_labels)


# ---------------------------------------------------------------------------------------------------
# MLX side: the encoder written here, with Hugging Face's module names
# ---------------------------------------------------------------------------------------------------
@functools.cache
def mlx_bert() -> SimpleNamespace:
    """The MLX modules (defined on first use: MLX is imported lazily, see harness/frameworks.py)."""
    nn = mlx_nn

    class Embeddings(nn.Module):
        def __init__(self, arch: BertArch) -> None:
            super().__init__()
            self.word_embeddings = nn.Embedding(arch.vocab, arch.hidden)
            self.position_embeddings = nn.Embedding(arch.max_positions, arch.hidden)
            self.token_type_embeddings = nn.Embedding(arch.type_vocab, arch.hidden)
            self.LayerNorm = nn.LayerNorm(arch.hidden, eps=arch.layer_norm_eps)

        def __call__(self, input_ids: Any, token_type_ids: Any) -> Any:
            x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
            x = x + self.position_embeddings(mx.arange(input_ids.shape[1]))
            return self.LayerNorm(x)

    class SelfAttention(nn.Module):
        def __init__(self, arch: BertArch) -> None:
            super().__init__()
            self.heads = arch.heads
            self.scale = (arch.hidden // arch.heads) ** -0.5
            self.query = nn.Linear(arch.hidden, arch.hidden)
            self.key = nn.Linear(arch.hidden, arch.hidden)
            self.value = nn.Linear(arch.hidden, arch.hidden)

        def __call__(self, x: Any, mask: Any) -> Any:
            batch, seq, _ = x.shape

            def heads(t: Any) -> Any:
                return t.reshape(batch, seq, self.heads, -1).transpose(0, 2, 1, 3)

            q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
            out = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.scale, mask=mask)
            return out.transpose(0, 2, 1, 3).reshape(batch, seq, -1)

    class DenseResidualNorm(nn.Module):
        """``attention.output`` and ``output`` of a layer: LayerNorm(dense(x) + residual)."""

        def __init__(self, arch: BertArch, dims_in: int) -> None:
            super().__init__()
            self.dense = nn.Linear(dims_in, arch.hidden)
            self.LayerNorm = nn.LayerNorm(arch.hidden, eps=arch.layer_norm_eps)

        def __call__(self, x: Any, residual: Any) -> Any:
            return self.LayerNorm(self.dense(x) + residual)

    class Attention(nn.Module):
        def __init__(self, arch: BertArch) -> None:
            super().__init__()
            self.self = SelfAttention(arch)  # Hugging Face's name: attention.self.query, ...
            self.output = DenseResidualNorm(arch, arch.hidden)

        def __call__(self, x: Any, mask: Any) -> Any:
            return self.output(self.self(x, mask), x)

    class Intermediate(nn.Module):
        def __init__(self, arch: BertArch) -> None:
            super().__init__()
            self.dense = nn.Linear(arch.hidden, arch.ffn)

        def __call__(self, x: Any) -> Any:
            return nn.gelu(self.dense(x))

    class Layer(nn.Module):
        def __init__(self, arch: BertArch) -> None:
            super().__init__()
            self.attention = Attention(arch)
            self.intermediate = Intermediate(arch)
            self.output = DenseResidualNorm(arch, arch.ffn)

        def __call__(self, x: Any, mask: Any) -> Any:
            attended = self.attention(x, mask)
            return self.output(self.intermediate(attended), attended)

    class Encoder(nn.Module):
        def __init__(self, arch: BertArch) -> None:
            super().__init__()
            self.layer = [Layer(arch) for _ in range(arch.layers)]

        def __call__(self, x: Any, mask: Any) -> Any:
            for layer in self.layer:
                x = layer(x, mask)
            return x

    class Pooler(nn.Module):
        def __init__(self, arch: BertArch) -> None:
            super().__init__()
            self.dense = nn.Linear(arch.hidden, arch.hidden)

        def __call__(self, hidden: Any) -> Any:
            return mx.tanh(self.dense(hidden[:, 0]))

    class BertModel(nn.Module):
        def __init__(self, arch: BertArch, pooler: bool = True) -> None:
            super().__init__()
            self.embeddings = Embeddings(arch)
            self.encoder = Encoder(arch)
            if pooler:
                self.pooler = Pooler(arch)

        def __call__(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> tuple[Any, Any]:
            """Last hidden states and the pooled [CLS] output (None without a pooler)."""
            keys = attention_mask.astype(mx.bool_)[:, None, None, :]  # True: attend to this key
            hidden = self.encoder(self.embeddings(input_ids, token_type_ids), keys)
            return hidden, self.pooler(hidden) if "pooler" in self else None

    class BertForSequenceClassification(nn.Module):
        def __init__(self, arch: BertArch, num_labels: int) -> None:
            super().__init__()
            self.bert = BertModel(arch)
            self.classifier = nn.Linear(arch.hidden, num_labels)

        def __call__(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.classifier(self.bert(input_ids, attention_mask, token_type_ids)[1])

    class BertNLI(nn.Module):
        """As TorchBertNLI: premises and hypotheses stacked in one batch through one encoder."""

        def __init__(self, arch: BertArch, num_labels: int) -> None:
            super().__init__()
            self.bert = BertModel(arch, pooler=False)
            self.classifier = nn.Linear(4 * arch.hidden, num_labels)

        def __call__(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden, _ = self.bert(input_ids, attention_mask, token_type_ids)
            mask = attention_mask[..., None].astype(hidden.dtype)
            pooled = (hidden * mask).sum(axis=1) / mask.sum(axis=1)
            u, v = mx.split(pooled, 2, axis=0)
            return self.classifier(mx.concatenate([u, v, mx.abs(u - v), u * v], axis=-1))

    return SimpleNamespace(
        BertModel=BertModel, BertForSequenceClassification=BertForSequenceClassification, BertNLI=BertNLI
    )


_INDEX_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")


def mlx_name(torch_name: str) -> str | None:
    """The MLX name of a torch state-dict entry: the same, but for the index buffers that transformers
    keeps in the embeddings (persisted by older releases) and MLX computes itself."""
    return None if torch_name.endswith(_INDEX_BUFFERS) else torch_name


def mlx_copy(torch_model: Any, mlx_model: Any) -> Any:
    """Load every weight of ``torch_model`` into ``mlx_model`` (strictly: nothing left at MLX's init)."""
    from benchmarks.workloads.common import load_mlx

    load_mlx(mlx_model, torch_model.state_dict(), rename=mlx_name)
    return mlx_model


# ---------------------------------------------------------------------------------------------------
# Local checkpoints
# ---------------------------------------------------------------------------------------------------
_LEGACY_NORM = re.compile(r"LayerNorm\.(gamma|beta)$")
_ENCODER_PARTS = ("embeddings.", "encoder.", "pooler.")


def checkpoint_name(name: str) -> str:
    """A checkpoint key in the workloads' layout: the encoder under ``bert.`` (a bare ``BertModel`` saves
    ``encoder...``, the ``BertFor*`` heads save ``bert.encoder...``), LayerNorm ``gamma``/``beta`` of
    TF-converted checkpoints as ``weight``/``bias``; heads (``classifier``, ``cls``) unchanged."""
    name = _LEGACY_NORM.sub(lambda m: "LayerNorm." + ("weight" if m.group(1) == "gamma" else "bias"), name)
    return "bert." + name if name.startswith(_ENCODER_PARTS) else name


def user_arch(name: str) -> tuple[BertArch, Path | None]:
    """The architecture of model ``name``: from the user's checkpoint config when one is set."""
    path = checkpoints.user_checkpoint(name)
    if path is None:
        return ARCHS[name], None
    return BertArch.from_hf(name, checkpoints.read_config(path, ("bert",)), path), path


def load_user_checkpoint(
    torch_model: Any, path: Path, optional: tuple[str, ...] = (), own: tuple[str, ...] = ()
) -> None:
    """Overwrite ``torch_model``'s weights with the checkpoint's.

    Keys are matched after ``checkpoint_name``, so the encoder of any Hugging Face BERT checkpoint fits
    (BertModel, BertForPreTraining, BertForMaskedLM, BertForSequenceClassification).  Parameters whose
    names start with one of ``optional`` may be absent from the file (the classification head of a
    checkpoint without one, the pooler of an MLM-only one) and those under ``own`` are never read from it
    (the NLI head, which no BERT checkpoint has): both keep the seeded random init, which the two
    frameworks share.  Extra keys (MLM heads, buffers) are ignored; a missing key or a wrong shape is a
    ``CheckpointError`` naming the file.
    """
    expected, _tied = checkpoints.torch_expected(torch_model)
    if own:
        expected = {name: shape for name, shape in expected.items() if not name.startswith(own)}
    optional_names = {name for name in expected if name.startswith(optional)} if optional else set()
    file, raw = checkpoints.read_weights(path)
    weights = checkpoints.check_weights(
        file, {checkpoint_name(k): v for k, v in raw.items()}, expected, optional_names
    )
    torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)


def checkpoint_labels(path: Path | None, default: int) -> int:
    """Classes of a checkpoint's classification head (config.json's id2label), else ``default``."""
    if path is None:
        return default
    id2label = checkpoints.read_config(path, ("bert",)).get("id2label") or {}
    return len(id2label) or default
