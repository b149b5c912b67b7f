"""Transformer language-model training: a decoder-only (GPT-style) transformer trained on next-token
prediction with AdamW and a linear learning-rate warm-up.  Reference size: 12 layers, width 1024, 16 heads,
FFN 4096, context 1024, vocabulary 10240, batch 32; AdamW lr 3e-4, weight decay 1e-5.

Timed: whole training steps (forward, backward, optimizer update, all evaluated), never evaluation alone.

The published comparison this replaces measured different work on each side: its PyTorch loop never
stepped the optimizer, and the sides differed in dropout and in a final LayerNorm.  Here the model is
written once per framework with the same structure and parameter names (token and learned positional
embeddings, pre-LayerNorm blocks with causal multi-head self-attention and an exact-erf GELU FFN, a final
LayerNorm, an untied output projection; no dropout anywhere), both sides load one set of NumPy-initialised
weights, use the same cross-entropy, the same AdamW (MLX with bias correction, as torch does) and the same
warm-up factor for step k, and really update their parameters.  No gradient clipping on either side (the
reference recipe has none).  Training runs in float32 only: torch's autocast and MLX's low-precision
arrays do not round the same intermediates, so a bfloat16 pair would not be the same computation.
tests/workloads/test_transformer_lm.py proves equal logits, equal losses over several steps, equal
learning rates step by step and that parameters change on both sides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.harness.backends import Backend, selected_backend_names
from benchmarks.harness.frameworks import mlx_nn, mx, torch
from benchmarks.harness.jobs import FromTimings, JobSpec, Track, job_benchmark, measure_all
from benchmarks.harness.profiles import active_profile
from benchmarks.workloads.common import (
    eager_backend,
    load_mlx,
    mlx_weights,
    peak_bytes,
    require_memory,
    torch_weights,
)

LAYER_NORM_EPS = 1e-5
INIT_STD = 0.02
FLOAT32_BYTES = 4


@dataclass(frozen=True)
class LMConfig:
    layers: int = 12
    dim: int = 1024
    heads: int = 16
    ffn: int = 4096
    context: int = 1024
    vocab: int = 10_240
    batch: int = 32
    lr: float = 3e-4
    weight_decay: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 100
    batches: int = 4  # distinct prepared batches the timed steps cycle through
    loss_steps: int = 20  # steps from the initial weights behind track_loss_after_steps

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not a multiple of heads {self.heads}")
        if self.warmup_steps < 1:
            raise ValueError(f"warmup_steps must be at least 1, got {self.warmup_steps}")

    @property
    def tokens_per_step(self) -> int:
        return self.batch * self.context

    def shapes(self) -> dict[str, tuple[int, ...]]:
        d, f = self.dim, self.ffn
        shapes: dict[str, tuple[int, ...]] = {
            "tok_embed.weight": (self.vocab, d),
            "pos_embed.weight": (self.context, d),
        }
        for i in range(self.layers):
            block = f"blocks.{i}"
            shapes |= {
                f"{block}.attn_norm.weight": (d,),
                f"{block}.attn_norm.bias": (d,),
                f"{block}.attn.qkv.weight": (3 * d, d),
                f"{block}.attn.qkv.bias": (3 * d,),
                f"{block}.attn.out.weight": (d, d),
                f"{block}.attn.out.bias": (d,),
                f"{block}.ffn_norm.weight": (d,),
                f"{block}.ffn_norm.bias": (d,),
                f"{block}.ffn.up.weight": (f, d),
                f"{block}.ffn.up.bias": (f,),
                f"{block}.ffn.down.weight": (d, f),
                f"{block}.ffn.down.bias": (d,),
            }
        shapes |= {"norm.weight": (d,), "norm.bias": (d,), "head.weight": (self.vocab, d)}
        return shapes

    def parameter_count(self) -> int:
        return sum(math.prod(s) for s in self.shapes().values())

    def training_bytes(self, materialised_attention: bool) -> float:
        """A planning estimate of one training step's memory: weights, gradients and AdamW's two moments,
        the activations kept for the backward pass, the logits with their softmax, gradient and one
        temporary, and, where attention is not fused (MLX's attention gradient), its probabilities per
        layer plus the few score-sized temporaries of one layer's backward.  Within 10% of the measured
        peak of both frameworks on the CPU at small sizes."""
        tokens = self.tokens_per_step
        state = 4 * self.parameter_count()
        # per token and layer: residual, 2 LayerNorm outputs, q/k/v, attention output, projection,
        # FFN input and activation, FFN output
        per_layer = 8 * self.dim + 2 * self.ffn
        activations = self.layers * tokens * per_layer
        logits = 4 * tokens * self.vocab
        attention = 0
        if materialised_attention:
            scores = self.batch * self.heads * self.context**2
            attention = (self.layers + 3) * scores
        return float(FLOAT32_BYTES * (state + activations + logits + attention))


# quick: the same architecture shrunk to seconds per benchmark on the 2-core VM (mlx-cpu's BLAS is slow).
CONFIGS = {
    "quick": LMConfig(
        layers=2, dim=128, heads=4, ffn=512, context=128, vocab=1000, batch=4, warmup_steps=10, loss_steps=10
    ),
    "full": LMConfig(),
}


def init_weights(config: LMConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """GPT-2's scheme: N(0, 0.02) matrices and embeddings, residual output projections scaled down by
    sqrt(2 * layers), zero biases, unit LayerNorm gains."""
    rng = np.random.default_rng(seed)
    residual_std = INIT_STD / math.sqrt(2 * config.layers)
    weights: dict[str, np.ndarray] = {}
    for name, shape in config.shapes().items():
        if name.endswith("norm.weight"):
            weights[name] = np.ones(shape, np.float32)
        elif name.endswith(".bias"):
            weights[name] = np.zeros(shape, np.float32)
        else:
            std = residual_std if name.endswith(("attn.out.weight", "ffn.down.weight")) else INIT_STD
            weights[name] = rng.standard_normal(shape, dtype=np.float32) * np.float32(std)
    return weights


def warmup_lr(config: LMConfig, step: int) -> float:
    """The learning rate of update ``step`` (0-based): linear from lr/warmup up to lr, then constant."""
    return config.lr * min(1.0, (step + 1) / config.warmup_steps)


def markov_batches(config: LMConfig, count: int, seed: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` (inputs, next-token targets) pairs, each (batch, context) int32, from a random Markov
    chain in which every token has 8 likely successors: learnable, so the loss falls from log(vocab)."""
    rng = np.random.default_rng(seed)
    successors = rng.integers(0, config.vocab, (config.vocab, 8))
    cumulative = np.cumsum(rng.dirichlet(np.ones(8), config.vocab), axis=1)
    rows = count * config.batch
    stream = np.empty((rows, config.context + 1), np.int64)
    stream[:, 0] = rng.integers(0, config.vocab, rows)
    for t in range(1, config.context + 1):
        previous = stream[:, t - 1]
        choice = (rng.random(rows)[:, None] > cumulative[previous]).sum(axis=1).clip(max=7)
        stream[:, t] = successors[previous, choice]
    stream = stream.astype(np.int32).reshape(count, config.batch, config.context + 1)
    return [(s[:, :-1].copy(), s[:, 1:].copy()) for s in stream]


# ---------------------------------------------------------------------------------------------------
# The two implementations.  Built on first use (MLX is imported lazily; see harness/frameworks.py).
# ---------------------------------------------------------------------------------------------------
def torch_model(config: LMConfig) -> Any:
    nn, functional = torch.nn, torch.nn.functional
    head_dim = config.dim // config.heads

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = nn.Linear(config.dim, 3 * config.dim)
            self.out = nn.Linear(config.dim, config.dim)

        def forward(self, x: Any) -> Any:
            batch, length, _ = x.shape
            qkv = self.qkv(x).view(batch, length, 3, config.heads, head_dim).permute(2, 0, 3, 1, 4)
            # scale: the default 1/sqrt(head_dim), as on the MLX side
            y = functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=True)
            return self.out(y.transpose(1, 2).reshape(batch, length, config.dim))

    class FeedForward(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up = nn.Linear(config.dim, config.ffn)
            self.down = nn.Linear(config.ffn, config.dim)

        def forward(self, x: Any) -> Any:
            return self.down(functional.gelu(self.up(x)))  # exact erf GELU, as mlx.nn.gelu

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn_norm = nn.LayerNorm(config.dim, eps=LAYER_NORM_EPS)
            self.attn = Attention()
            self.ffn_norm = nn.LayerNorm(config.dim, eps=LAYER_NORM_EPS)
            self.ffn = FeedForward()

        def forward(self, x: Any) -> Any:
            x = x + self.attn(self.attn_norm(x))
            return x + self.ffn(self.ffn_norm(x))

    class LanguageModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok_embed = nn.Embedding(config.vocab, config.dim)
            self.pos_embed = nn.Embedding(config.context, config.dim)
            self.blocks = nn.ModuleList(Block() for _ in range(config.layers))
            self.norm = nn.LayerNorm(config.dim, eps=LAYER_NORM_EPS)
            self.head = nn.Linear(config.dim, config.vocab, bias=False)

        def forward(self, tokens: Any) -> Any:
            positions = torch.arange(tokens.shape[1], device=tokens.device)
            x = self.tok_embed(tokens) + self.pos_embed(positions)
            for block in self.blocks:
                x = block(x)
            return self.head(self.norm(x))

    return LanguageModel()


def mlx_model(config: LMConfig) -> Any:
    nn = mlx_nn
    head_dim = config.dim // config.heads

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = nn.Linear(config.dim, 3 * config.dim)
            self.out = nn.Linear(config.dim, config.dim)

        def __call__(self, x: Any) -> Any:
            batch, length, _ = x.shape
            qkv = self.qkv(x).reshape(batch, length, 3, config.heads, head_dim).transpose(2, 0, 3, 1, 4)
            y = mx.fast.scaled_dot_product_attention(
                qkv[0], qkv[1], qkv[2], scale=head_dim**-0.5, mask="causal"
            )
            return self.out(y.transpose(0, 2, 1, 3).reshape(batch, length, config.dim))

    class FeedForward(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up = nn.Linear(config.dim, config.ffn)
            self.down = nn.Linear(config.ffn, config.dim)

        def __call__(self, x: Any) -> Any:
            return self.down(nn.gelu(self.up(x)))

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn_norm = nn.LayerNorm(config.dim, eps=LAYER_NORM_EPS)
            self.attn = Attention()
            self.ffn_norm = nn.LayerNorm(config.dim, eps=LAYER_NORM_EPS)
            self.ffn = FeedForward()

        def __call__(self, x: Any) -> Any:
            x = x + self.attn(self.attn_norm(x))
            return x + self.ffn(self.ffn_norm(x))

    class LanguageModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok_embed = nn.Embedding(config.vocab, config.dim)
            self.pos_embed = nn.Embedding(config.context, config.dim)
            self.blocks = [Block() for _ in range(config.layers)]
            self.norm = nn.LayerNorm(config.dim, eps=LAYER_NORM_EPS)
            self.head = nn.Linear(config.dim, config.vocab, bias=False)

        def __call__(self, tokens: Any) -> Any:
            x = self.tok_embed(tokens) + self.pos_embed(mx.arange(tokens.shape[1]))
            for block in self.blocks:
                x = block(x)
            return self.head(self.norm(x))

    return LanguageModel()


class TorchSide:
    def __init__(self, config: LMConfig, weights: dict[str, np.ndarray], backend: Backend) -> None:
        self.config, self.backend = config, backend
        self.model = torch_model(config).to(backend.torch_device())
        self.reset(weights)

    def reset(self, weights: dict[str, np.ndarray]) -> None:
        """Load ``weights`` and start a fresh optimizer and warm-up schedule."""
        config = self.config
        self.model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=config.lr,
            betas=config.betas,
            eps=config.eps,
            weight_decay=config.weight_decay,
        )
        # LambdaLR applies factor(k) to the update made after k scheduler steps: one per optimizer step.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: warmup_lr(config, step) / config.lr
        )

    def logits(self, tokens: Any) -> Any:
        with torch.no_grad():
            return self.model(tokens)

    def step(self, tokens: Any, targets: Any) -> Any:
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(tokens)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()

    def learning_rate(self) -> float:
        """The learning rate the next step will use."""
        return float(self.optimizer.param_groups[0]["lr"])

    def parameters(self) -> dict[str, np.ndarray]:
        return torch_weights(self.model)


class MlxSide:
    def __init__(self, config: LMConfig, weights: dict[str, np.ndarray], backend: Backend) -> None:
        self.config, self.backend = config, backend
        self.model = mlx_model(config)
        self._loss_and_grad = mlx_nn.value_and_grad(self.model, self._loss)
        self.reset(weights)

    def reset(self, weights: dict[str, np.ndarray]) -> None:
        import mlx.optimizers as optim

        config = self.config
        load_mlx(self.model, weights)
        self.optimizer = optim.AdamW(
            learning_rate=self._schedule,
            betas=list(config.betas),
            eps=config.eps,
            weight_decay=config.weight_decay,
            bias_correction=True,  # as torch does; MLX's default leaves the first steps uncorrected
        )

    def _schedule(self, step: Any) -> Any:
        # MLX calls the schedule with the count of updates made so far, before incrementing it.
        warm = (step.astype(mx.float32) + 1) / self.config.warmup_steps
        return self.config.lr * mx.minimum(warm, 1.0)

    def _loss(self, tokens: Any, targets: Any) -> Any:
        return mlx_nn.losses.cross_entropy(self.model(tokens), targets, reduction="mean")

    def logits(self, tokens: Any) -> Any:
        return self.model(tokens)

    def step(self, tokens: Any, targets: Any) -> Any:
        loss, grads = self._loss_and_grad(tokens, targets)
        self.optimizer.update(self.model, grads)
        mx.eval(loss, self.model.parameters(), self.optimizer.state)
        return loss

    def learning_rate(self) -> float:
        return float(self._schedule(self.optimizer.step))

    def parameters(self) -> dict[str, np.ndarray]:
        return mlx_weights(self.model)


# ---------------------------------------------------------------------------------------------------
# One prepared job per benchmark process
# ---------------------------------------------------------------------------------------------------
class LMTrainingJob:
    def __init__(self, backend_name: str, config: LMConfig) -> None:
        self.backend = eager_backend(backend_name, "transformer LM")
        # MLX's attention gradient materialises the (context x context) probabilities of every layer;
        # torch's SDPA backward (flash / memory-efficient kernels, CPU included) does not.
        materialised = self.backend.framework == "mlx"
        require_memory(
            self.backend,
            config.training_bytes(materialised),
            f"transformer LM training ({config.parameter_count() / 1e6:.0f}M parameters, "
            f"batch {config.batch} x context {config.context})",
        )
        self.config = config
        self.weights = init_weights(config)
        side = MlxSide if self.backend.framework == "mlx" else TorchSide
        self.side = side(config, self.weights, self.backend)
        self.batches = [
            (self.backend.asarray(tokens, "int32"), self.backend.asarray(targets, "int32"))
            for tokens, targets in markov_batches(config, config.batches)
        ]
        self._next = 0
        self.train_step()  # warm-up, outside every timed region

    def train_step(self) -> Any:
        tokens, targets = self.batches[self._next]
        self._next = (self._next + 1) % len(self.batches)
        loss = self.side.step(tokens, targets)
        self.backend.sync(loss)
        return loss

    def step_peak_bytes(self) -> int:
        return peak_bytes(self.backend, self.train_step)

    def loss_after_steps(self) -> float:
        """The loss of step ``loss_steps`` from the initial weights (the job's own steps undone first):
        the same number on both frameworks when they train alike."""
        self.side.reset(self.weights)
        self._next = 0
        for _ in range(self.config.loss_steps):
            loss = self.train_step()
        return float(self.backend.to_numpy(loss))


LM_JOB = JobSpec(
    name="TransformerLMTraining",
    module=__name__,
    doc=(
        "Training steps of a decoder-only transformer LM (float32): step time, tokens/s, peak memory of a "
        "step, and the loss after a fixed number of steps from the shared initial weights (loss parity)."
    ),
    params=[selected_backend_names()],
    param_names=["backend"],
    build=lambda backend: LMTrainingJob(backend, CONFIGS[active_profile().name]),
    timings={"train_step_seconds": lambda job: job.train_step},
    tracks={
        "tokens_per_s": FromTimings(
            "tokens/s", lambda job, t: job.config.tokens_per_step / min(t["train_step_seconds"])
        ),
        "peak_memory": Track("bytes", LMTrainingJob.step_peak_bytes),
        # last: it resets the weights and steps from them
        "loss_after_steps": Track("nats", LMTrainingJob.loss_after_steps),
    },
)


class TransformerLMTraining(job_benchmark(LM_JOB)):
    def setup_cache(self) -> dict:
        return measure_all(LM_JOB)
