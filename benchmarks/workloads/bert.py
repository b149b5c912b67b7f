"""BERT workloads: a siamese NLI classifier trained from scratch, and the sequence-classification grid
(training and inference) over model size, batch and sequence length.

NLI (``BertNLITraining``): Conneau et al.'s sentence-pair classifier on a BERT-tiny encoder (2 layers,
hidden 128, 2 heads, FFN 512, vocab 30522), 8 pairs x 128 tokens, AdamW lr 5e-5 from random weights.  One
shared encoder embeds premise and hypothesis (stacked into one batch of 16 sequences: the same math as two
calls); each sentence is mean pooled over its non-padding tokens -- Sentence-BERT's choice for BERT, where
Conneau et al. max pooled a BiLSTM -- into u and v; [u, v, |u-v|, u*v] -> Linear(4 x hidden, 3) -> cross
entropy.

Grid (``BertClassificationTraining`` / ``BertClassificationInference``): transformers'
``BertForSequenceClassification`` (pooled [CLS] -> 2 labels) and its MLX twin on packed sentence pairs: a
training step (forward, cross entropy, backward, AdamW step) or a forward without gradients.  Full profile:
bert-base-cased and bert-large-cased x batch 16/64/256 x sequence 128/512; combinations the machine cannot
hold skip with the estimate (``require_memory``) while the others run.  Quick profile: bert-tiny on a
small grid, seconds per call on the 2-core VM.

Kept equal (bert_model.py says how the models are): one seeded torch init copied to MLX, the same
synthetic batch (variable lengths, padding, token types, labels) prepared in NumPy outside the timed
region, the same loss, and AdamW with torch's settings on both sides (MLX's needs ``bias_correction=True``
for that).  Every timed step ends in exactly one ``backend.sync`` on each side: the torch loss or logits
(the device is synchronised), and on MLX the loss together with the updated parameters and AdamW state,
which ``mx.eval`` materialises at once (the published version synchronised one side every step and never
the other).  tests/workloads/test_bert.py proves equal weights, outputs, losses and updated parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.harness.backends import Backend, selected_backend_names
from benchmarks.harness.frameworks import mlx_nn, torch
from benchmarks.harness.jobs import FromTimings, JobSpec, Track, job_benchmark, measure_all
from benchmarks.harness.profiles import active_profile
from benchmarks.workloads.bert_model import (
    ARCHS,
    TokenBatch,
    checkpoint_labels,
    inference_bytes,
    load_user_checkpoint,
    mlx_bert,
    mlx_copy,
    nli_batch,
    pair_batch,
    require_transformers,
    torch_classifier,
    torch_nli,
    training_bytes,
    user_arch,
)
from benchmarks.workloads.common import (
    eager_backend,
    mlx_weights,
    peak_bytes,
    require_memory,
    runs_as_built,
    torch_weights,
)

WEIGHT_SEED, DATA_SEED = 0, 1


@dataclass(frozen=True)
class AdamWSettings:
    lr: float = 5e-5
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.01


@dataclass(frozen=True)
class NLIConfig:
    model: str = "bert-tiny"
    pairs: int = 8
    seq: int = 128
    labels: int = 3  # entailment, neutral, contradiction
    optimizer: AdamWSettings = field(default_factory=AdamWSettings)


@dataclass(frozen=True)
class GridConfig:
    models: tuple[str, ...]
    batches: tuple[int, ...]
    seqs: tuple[int, ...]
    labels: int = 2
    optimizer: AdamWSettings = field(default_factory=AdamWSettings)  # BERT's fine-tuning lr


# quick: the reference NLI shape at a quarter of the sequence (mlx-cpu's reference BLAS is slow).
NLI_CONFIGS = {"quick": NLIConfig(seq=32), "full": NLIConfig()}
GRID_CONFIGS = {
    "quick": GridConfig(models=("bert-tiny",), batches=(8, 16), seqs=(32, 64)),
    "full": GridConfig(
        models=("bert-base-cased", "bert-large-cased"), batches=(16, 64, 256), seqs=(128, 512)
    ),
}
# Read once at import: asv fixes the parameter values at discovery (see harness/profiles.py).
GRID = GRID_CONFIGS[active_profile().name]


# ---------------------------------------------------------------------------------------------------
# The two sides: a model, its AdamW (None for inference) and cross entropy on its logits
# ---------------------------------------------------------------------------------------------------
class TorchSide:
    def __init__(self, model: Any, settings: AdamWSettings | None, backend: Backend) -> None:
        self.model = model.to(backend.torch_device())
        self.model.train(settings is not None)  # no dropout either way: the configs set it to 0
        self.optimizer = None
        if settings is not None:
            self.optimizer = torch.optim.AdamW(
                self.model.parameters(),
                lr=settings.lr,
                betas=settings.betas,
                eps=settings.eps,
                weight_decay=settings.weight_decay,
            )

    def logits(self, inputs: dict[str, Any]) -> Any:
        out = self.model(**inputs)
        return getattr(out, "logits", out)  # transformers' output object, or the NLI module's tensor

    def step(self, inputs: dict[str, Any], labels: Any) -> list[Any]:
        """One training step; returns what the step must materialise, the loss first."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(self.logits(inputs), labels)
        loss.backward()
        self.optimizer.step()
        return [loss.detach()]

    def predict(self, inputs: dict[str, Any]) -> Any:
        with torch.no_grad():
            return self.logits(inputs)

    def parameters(self) -> dict[str, np.ndarray]:
        # copies: on the CPU torch_weights' arrays share memory with the live parameters
        return {name: value.copy() for name, value in torch_weights(self.model).items()}


class MlxSide:
    def __init__(self, model: Any, settings: AdamWSettings | None) -> None:
        import mlx.optimizers as optim

        self.model = model
        self.optimizer = None
        if settings is not None:
            self.optimizer = optim.AdamW(
                learning_rate=settings.lr,
                betas=list(settings.betas),
                eps=settings.eps,
                weight_decay=settings.weight_decay,
                bias_correction=True,  # as torch does; MLX's default leaves the first steps uncorrected
            )
        self._loss_and_grad = mlx_nn.value_and_grad(model, self._loss)

    def logits(self, inputs: dict[str, Any]) -> Any:
        return self.model(**inputs)

    def _loss(self, inputs: dict[str, Any], labels: Any) -> Any:
        return mlx_nn.losses.cross_entropy(self.logits(inputs), labels, reduction="mean")

    def step(self, inputs: dict[str, Any], labels: Any) -> list[Any]:
        """One training step, lazily; returns the loss, the updated parameters and the optimizer state,
        which one ``mx.eval`` (the caller's sync) computes together."""
        loss, grads = self._loss_and_grad(inputs, labels)
        self.optimizer.update(self.model, grads)
        return [loss, self.model.parameters(), self.optimizer.state]

    def predict(self, inputs: dict[str, Any]) -> Any:
        return self.logits(inputs)

    def parameters(self) -> dict[str, np.ndarray]:
        return mlx_weights(self.model)


Side = TorchSide | MlxSide


def materialised_attention(backend: Backend) -> bool:
    """Whether the memory estimate counts (seq x seq) attention matrices: MLX's attention gradient keeps
    them, and its CPU forward computes them (its fused GPU inference kernel does not: counted anyway, to
    stay on the safe side); torch's SDPA kernels (flash / memory-efficient, CPU included) do not."""
    return backend.framework == "mlx"


def make_side(
    backend: Backend, torch_model: Any, mlx_model: Callable[[], Any], settings: AdamWSettings | None
) -> Side:
    """The backend's side, from ``torch_model``'s weights (an MLX model gets a copy of every one)."""
    if backend.framework == "torch":
        return TorchSide(torch_model, settings, backend)
    return MlxSide(mlx_copy(torch_model, mlx_model()), settings)


# ---------------------------------------------------------------------------------------------------
# One prepared job per benchmark process
# ---------------------------------------------------------------------------------------------------
class BertJob:
    """A side with its batch on the backend, warmed up by one call of the benchmarked kind."""

    def __init__(self, backend: Backend, side: Side, batch: TokenBatch, examples: int, train: bool) -> None:
        self.backend, self.side, self.examples = backend, side, examples
        self.inputs = {name: backend.asarray(ids, "float32") for name, ids in batch.inputs().items()}
        self.labels = backend.asarray(batch.labels, "float32")  # integer ids stay integers
        self.run = self.train_step if train else self.inference
        self.run()  # warm-up, outside every timed region

    def train_step(self) -> None:
        self.backend.sync(self.side.step(self.inputs, self.labels))

    def inference(self) -> None:
        self.backend.sync(self.side.predict(self.inputs))

    def peak_bytes(self) -> int:
        return peak_bytes(self.backend, self.run)


def nli_job(backend_name: str, config: NLIConfig) -> BertJob:
    backend = eager_backend(backend_name, "BERT NLI")
    require_transformers()
    arch, checkpoint = user_arch(config.model)
    rows = 2 * config.pairs  # premises and hypotheses
    require_memory(
        backend,
        training_bytes(arch, rows, config.seq, materialised_attention(backend)),
        f"BERT NLI training ({arch.name}, {config.pairs} pairs x {config.seq} tokens)",
    )
    torch_model = torch_nli(arch, config.labels, WEIGHT_SEED)
    if checkpoint is not None:
        load_user_checkpoint(torch_model, checkpoint, own=("classifier.",))
    side = make_side(backend, torch_model, lambda: mlx_bert().BertNLI(arch, config.labels), config.optimizer)
    batch = nli_batch(config.pairs, config.seq, arch.vocab, DATA_SEED, config.labels)
    return BertJob(backend, side, batch, config.pairs, train=True)


def classification_job(
    backend_name: str, model: str, batch_size: int, seq: int, train: bool, grid: GridConfig
) -> BertJob:
    backend = eager_backend(backend_name, "BERT classification")
    require_transformers()
    if model not in ARCHS:
        raise NotImplementedError(f"unknown BERT model {model!r}; known: {', '.join(ARCHS)}")
    arch, checkpoint = user_arch(model)
    labels = checkpoint_labels(checkpoint, grid.labels)
    mode = "training" if train else "inference"
    need = (training_bytes if train else inference_bytes)(
        arch, batch_size, seq, materialised_attention(backend)
    )
    require_memory(backend, need, f"{model} {mode} ({batch_size} x {seq} tokens)")
    torch_model = torch_classifier(arch, labels, WEIGHT_SEED, mapped=not runs_as_built(backend))
    if checkpoint is not None:
        load_user_checkpoint(torch_model, checkpoint, optional=("bert.pooler.", "classifier."))
    side = make_side(
        backend,
        torch_model,
        lambda: mlx_bert().BertForSequenceClassification(arch, labels),
        grid.optimizer if train else None,
    )
    batch = pair_batch(batch_size, seq, arch.vocab, labels, DATA_SEED)
    return BertJob(backend, side, batch, batch_size, train=train)


# ---------------------------------------------------------------------------------------------------
# asv benchmarks
# ---------------------------------------------------------------------------------------------------
def bert_tracks(timing: str) -> dict[str, Track | FromTimings]:
    """Samples per second at the fastest sample of ``timing``, and the peak memory of a step."""
    return {
        "samples_per_s": FromTimings("samples/s", lambda job, t: job.examples / min(t[timing])),
        "peak_memory": Track("bytes", BertJob.peak_bytes),
    }


# generous: the full sizes are for accelerators; on a CPU a bert-large step takes minutes
BERT_TIMEOUT = 3600.0

NLI_JOB = JobSpec(
    name="BertNLITraining",
    module=__name__,
    preimport=("transformers.models.bert.modeling_bert",),
    doc="Training steps of the siamese NLI classifier (8 pairs per step), throughput and peak memory.",
    params=[selected_backend_names()],
    param_names=["backend"],
    build=lambda backend: nli_job(backend, NLI_CONFIGS[active_profile().name]),
    timings={"train_step_seconds": lambda job: job.train_step},
    tracks=bert_tracks("train_step_seconds"),
    timeout=BERT_TIMEOUT,
)


def classification_spec(name: str, doc: str, train: bool) -> JobSpec:
    """The BertForSequenceClassification grid, trained or run forward: one spec for either."""
    timing = "train_step_seconds" if train else "inference_seconds"
    return JobSpec(
        name=name,
        module=__name__,
        preimport=("transformers.models.bert.modeling_bert",),
        doc=doc,
        params=[selected_backend_names(), list(GRID.models), list(GRID.batches), list(GRID.seqs)],
        param_names=["backend", "model", "batch", "seq"],
        build=lambda backend, model, batch, seq: classification_job(backend, model, batch, seq, train, GRID),
        timings={timing: (lambda job: job.train_step) if train else (lambda job: job.inference)},
        tracks=bert_tracks(timing),
        timeout=BERT_TIMEOUT,
    )


CLASSIFICATION_TRAINING_JOB = classification_spec(
    "BertClassificationTraining",
    "BertForSequenceClassification training steps (forward, cross entropy, backward, AdamW).",
    train=True,
)
CLASSIFICATION_INFERENCE_JOB = classification_spec(
    "BertClassificationInference",
    "BertForSequenceClassification forward passes without gradients.",
    train=False,
)


class BertNLITraining(job_benchmark(NLI_JOB)):
    def setup_cache(self) -> dict:
        return measure_all(NLI_JOB)


class BertClassificationTraining(job_benchmark(CLASSIFICATION_TRAINING_JOB)):
    def setup_cache(self) -> dict:
        return measure_all(CLASSIFICATION_TRAINING_JOB)


class BertClassificationInference(job_benchmark(CLASSIFICATION_INFERENCE_JOB)):
    def setup_cache(self) -> dict:
        return measure_all(CLASSIFICATION_INFERENCE_JOB)
