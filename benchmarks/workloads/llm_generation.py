"""LLM generation: greedy decoding with a KV cache on the TinyLlama-1.1B (Llama) and Phi-2 (Phi)
architectures, in float32 and half precision.

The torch side is transformers' ``LlamaForCausalLM`` / ``PhiForCausalLM``, the MLX side mlx-lm's
``llama`` / ``phi`` ``Model``; both are built from one Hugging Face config and share the same weights
(initialised once by transformers with a fixed seed, or read from a local checkpoint named by
``MTB_CHECKPOINT_TINYLLAMA`` / ``MTB_CHECKPOINT_PHI_2``), so greedy decoding yields the same tokens
(tests/workloads/test_llm_generation.py).  Both loops do the same work per token: the prompt is
prefilled in one call that projects only its last position onto the vocabulary, then exactly
``new_tokens`` tokens are decoded one at a time (no end-of-sequence stop, no sampling rules).  Neither
side waits for the host between decode steps (MLX evaluates asynchronously, torch keeps the token on its
device); the whole generation is synchronised once at the end.

Decoding comes in the variants users deploy, as the ``decode`` parameter.  ``eager``: transformers'
per-token loop with its dynamic cache, and mlx-lm's model in its own loop (asynchronous evaluation).
``graph``: on torch, a static KV cache and the one-token decode step captured once in a CUDA graph and
replayed for every token (a captured graph rather than ``torch.compile(mode="reduce-overhead")``, which
fails over transformers' static cache with "accessing tensor output of CUDAGraphs that has been
overwritten", while transformers' own compile skips CUDA graphs for "mutated inputs").  MLX has no such
variant: mlx-lm's cache advances by a Python integer offset every token, which ``mx.compile`` would
freeze into the graph, and mlx-lm does not compile its decode step; that combination is skipped with the
reason.  Every variant decodes the same greedy tokens (tests/workloads/test_llm_generation.py).

Metrics: time to first token (prefill), whole generation time, prefill and decode tokens/s (from the
medians of the samples), decode speed as a fraction of the device's bandwidth limit (the weights' bytes
read once per token at the copy bandwidth measured in the same process), the peak memory a generation
adds on top of the weights (KV cache, activations) and the weights' own bytes.  ``decode=graph``
allocates its static cache and the graph's memory pool once, when the step is captured at warm-up, so
its peak leaves them out where the eager loop's includes its growing cache.
"""

from __future__ import annotations

import inspect
import math
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.harness import peaks
from benchmarks.harness.backends import Backend, get_backend, selected_backend_names
from benchmarks.harness.frameworks import mx, torch
from benchmarks.harness.jobs import FromTimings, JobSpec, Track, job_benchmark, measure_all
from benchmarks.harness.profiles import active_profile
from benchmarks.workloads.checkpoints import load_checkpoint, torch_expected, user_checkpoint
from benchmarks.workloads.common import (
    eager_backend,
    mlx_from_torch,
    peak_bytes,
    require_memory,
    require_module,
    runs_as_built,
    seeded_model,
)

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


@dataclass(frozen=True)
class Architecture:
    key: str  # also the checkpoint variable: MTB_CHECKPOINT_<KEY>
    model_type: str
    config: dict[str, Any]  # Hugging Face config of the real model
    shrunk: dict[str, Any]  # what the quick profile changes


ARCHITECTURES = {
    "tinyllama": Architecture(
        "tinyllama",
        "llama",
        dict(
            hidden_size=2048,
            intermediate_size=5632,
            num_hidden_layers=22,
            num_attention_heads=32,
            num_key_value_heads=4,
            vocab_size=32000,
            max_position_embeddings=2048,
            rms_norm_eps=1e-5,
            rope_theta=10000.0,
            hidden_act="silu",
            tie_word_embeddings=False,
        ),
        dict(hidden_size=256, intermediate_size=704, num_hidden_layers=4, num_attention_heads=8),
    ),
    "phi-2": Architecture(
        "phi-2",
        "phi",
        dict(
            hidden_size=2560,
            intermediate_size=10240,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            vocab_size=51200,
            max_position_embeddings=2048,
            layer_norm_eps=1e-5,
            rope_theta=10000.0,
            partial_rotary_factor=0.4,
            hidden_act="gelu_new",
            tie_word_embeddings=False,
            qk_layernorm=False,
        ),
        dict(
            hidden_size=256,
            intermediate_size=1024,
            num_hidden_layers=4,
            num_attention_heads=8,
            num_key_value_heads=8,
        ),
    ),
}
NO_DROPOUT = dict(attention_dropout=0.0, resid_pdrop=0.0, embd_pdrop=0.0)


@dataclass(frozen=True)
class GenerationConfig:
    prompt_tokens: int
    new_tokens: int
    shrink: bool  # quick: the architectures shrunk (hidden 256, 4 layers), vocabularies kept
    dtypes: tuple[str, ...] = field(default=("float32", "bfloat16"))


CONFIGS = {
    "quick": GenerationConfig(prompt_tokens=64, new_tokens=16, shrink=True),
    "full": GenerationConfig(
        prompt_tokens=128, new_tokens=200, shrink=False, dtypes=("float32", "float16", "bfloat16")
    ),
}


def hf_config(arch: Architecture, shrink: bool, overrides: dict[str, Any] | None = None) -> Any:
    import transformers

    values = {**arch.config, **(arch.shrunk if shrink else {}), **NO_DROPOUT, **(overrides or {})}
    cls = transformers.LlamaConfig if arch.model_type == "llama" else transformers.PhiConfig
    return cls(**values)


def parameter_count(config: Any) -> int:
    """Parameters of a Llama or Phi config, from its dimensions (no model is built)."""
    d, f, layers, vocab = (
        config.hidden_size,
        config.intermediate_size,
        config.num_hidden_layers,
        config.vocab_size,
    )
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    kv = d // heads * kv_heads
    if config.model_type == "llama":
        per_layer = d * (2 * d + 2 * kv) + 3 * d * f + 2 * d
        return layers * per_layer + vocab * d * (1 if config.tie_word_embeddings else 2) + d
    per_layer = (d + 1) * (2 * d + 2 * kv) + 2 * d * f + f + d + 2 * d
    return layers * per_layer + vocab * d + (d + 1) * vocab + 2 * d


def rope_settings(config: Any) -> dict[str, float]:
    """transformers 5 keeps rope_theta and partial_rotary_factor inside ``rope_parameters``; mlx-lm reads
    them at the top level (and would otherwise take its own defaults)."""
    params = getattr(config, "rope_parameters", None) or {}
    settings = {"rope_theta": float(params.get("rope_theta", getattr(config, "rope_theta", 10000.0)))}
    if config.model_type == "phi":
        settings["partial_rotary_factor"] = float(
            params.get("partial_rotary_factor", getattr(config, "partial_rotary_factor", 0.4))
        )
    return settings


# ---------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------
def build_torch_model(config: Any, seed: int = 0, checkpoint: Any = None, mapped: bool = False) -> Any:
    """The transformers model in float32 on the CPU: random weights from ``seed``, or a checkpoint's.
    ``mapped``: the caller only copies its weights elsewhere (``seeded_model``)."""
    import transformers

    cls = transformers.LlamaForCausalLM if config.model_type == "llama" else transformers.PhiForCausalLM
    if checkpoint is None:
        return seeded_model(cls, config, seed, mapped)
    torch.manual_seed(seed)
    model = cls(config).eval()
    state = {name: torch.from_numpy(value) for name, value in checkpoint.weights.items()}
    model.load_state_dict(state, strict=False)
    if "lm_head.weight" not in state and config.tie_word_embeddings:
        model.tie_weights()
    return model


def mlx_model_args(config: Any) -> Any:
    """mlx-lm's ModelArgs for the same config; mlx-lm's llama defaults to tied embeddings where
    transformers does not, so the flag is always passed."""
    if config.model_type == "llama":
        from mlx_lm.models.llama import ModelArgs
    else:
        from mlx_lm.models.phi import ModelArgs
    values = config.to_dict() | rope_settings(config)
    args = ModelArgs.from_dict(values)
    if hasattr(args, "tie_word_embeddings"):
        args.tie_word_embeddings = bool(config.tie_word_embeddings)
    return args


def build_mlx_model(config: Any, torch_model: Any, dtype: str) -> Any:
    """mlx-lm's model holding the torch model's weights (same names), converted tensor by tensor."""
    if config.model_type == "llama":
        from mlx_lm.models.llama import Model
    else:
        from mlx_lm.models.phi import Model
    model = Model(mlx_model_args(config))
    tied = config.tie_word_embeddings
    weights = [
        (name, mlx_from_torch(tensor, dtype))
        for name, tensor in torch_model.state_dict().items()
        if not (tied and name == "lm_head.weight")
    ]
    model.load_weights(weights, strict=True)
    mx.eval(model.parameters())
    return model


def checkpoint_for(arch: Architecture) -> Any:
    """The user's local checkpoint for ``arch`` (checked against its own config), or None."""
    path = user_checkpoint(arch.key)
    if path is None:
        return None
    from benchmarks.workloads.checkpoints import read_config

    config = hf_config(arch, shrink=False, overrides=read_config(path, [arch.model_type]))
    expected, optional = torch_expected(build_torch_model(config))
    return load_checkpoint(path, [arch.model_type], expected, optional)


# ---------------------------------------------------------------------------------------------------
# The two generation loops
# ---------------------------------------------------------------------------------------------------
class TorchGenerator:
    def __init__(self, model: Any, backend: Backend, dtype: str) -> None:
        self.backend = backend
        self.model = model.to(dtype=getattr(torch, dtype), device=backend.torch_device())

    def prefill(self, prompt: Any) -> tuple[Any, Any]:
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        out = self.model(input_ids=prompt, past_key_values=cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1].argmax(-1, keepdim=True), out.past_key_values

    def generate(self, prompt: Any, new_tokens: int) -> Any:
        with torch.inference_mode():
            token, cache = self.prefill(prompt)
            tokens = [token]
            for _ in range(new_tokens - 1):
                out = self.model(input_ids=token, past_key_values=cache, use_cache=True, logits_to_keep=1)
                token, cache = out.logits[:, -1].argmax(-1, keepdim=True), out.past_key_values
                tokens.append(token)
            return torch.cat(tokens, dim=1)

    def first_token(self, prompt: Any) -> Any:
        with torch.inference_mode():
            return self.prefill(prompt)[0]

    def logits(self, tokens: Any) -> Any:
        with torch.inference_mode():
            return self.model(input_ids=tokens).logits

    def weight_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters())  # tied ones once


class TorchGraphGenerator(TorchGenerator):
    """A static KV cache, and the one-token decode step captured in a CUDA graph once and replayed for
    every token.  ``capture=False`` runs the same static-cache step eagerly (the CPU tests check its
    tokens against the dynamic cache's)."""

    def __init__(
        self, model: Any, backend: Backend, dtype: str, max_tokens: int, capture: bool = True
    ) -> None:
        super().__init__(model, backend, dtype)
        from transformers import StaticCache

        device = backend.torch_device()
        self.capture = capture
        self.cache = StaticCache(config=self.model.config, max_cache_len=max_tokens)
        self.token = torch.zeros((1, 1), dtype=torch.long, device=device)
        self.position = torch.zeros((1,), dtype=torch.long, device=device)
        self.next_token: Any = None
        self.graph: Any = None

    def _step(self) -> Any:
        out = self.model(
            input_ids=self.token, past_key_values=self.cache, cache_position=self.position,
            use_cache=True, logits_to_keep=1,
        )  # fmt: skip
        return out.logits[:, -1].argmax(-1, keepdim=True)

    def prefill(self, prompt: Any) -> tuple[Any, Any]:
        self.cache.reset()  # zeroes the cache in place: the captured graph keeps its tensors
        positions = torch.arange(prompt.shape[1], device=prompt.device)
        out = self.model(
            input_ids=prompt, past_key_values=self.cache, cache_position=positions,
            use_cache=True, logits_to_keep=1,
        )  # fmt: skip
        return out.logits[:, -1].argmax(-1, keepdim=True), self.cache

    def _captured(self) -> None:
        """Capture the step (after warm-up steps on a side stream, as CUDA graphs require); the steps
        wrote into the cache, so the caller prefills again."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self._step()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.next_token = self._step()

    def generate(self, prompt: Any, new_tokens: int) -> Any:
        with torch.inference_mode():
            token, _ = self.prefill(prompt)
            start = prompt.shape[1]
            if self.capture and self.graph is None:
                self.token.copy_(token)
                self.position.fill_(start)
                self._captured()
                token, _ = self.prefill(prompt)
            tokens = [token]
            for index in range(new_tokens - 1):
                self.token.copy_(token)
                self.position.fill_(start + index)
                if self.capture:
                    self.graph.replay()
                    token = self.next_token.clone()
                else:
                    token = self._step()
                tokens.append(token)
            return torch.cat(tokens, dim=1)


class MlxGenerator:
    def __init__(self, model: Any, backend: Backend, dtype: str) -> None:
        self.backend = backend
        self.model = model
        # mlx-lm up to 0.26 declares phi's inner model as (x, mask, cache); None means causal there too
        inner = inspect.signature(model.model.__call__).parameters
        mask_required = "mask" in inner and inner["mask"].default is inspect.Parameter.empty
        self._extra = {"mask": None} if mask_required else {}

    def _last_logits(self, tokens: Any, cache: Any) -> Any:
        hidden = self.model.model(tokens, **self._extra, cache=cache)[:, -1:, :]
        if hasattr(self.model, "lm_head"):
            return self.model.lm_head(hidden)
        return self.model.model.embed_tokens.as_linear(hidden)

    def prefill(self, prompt: Any) -> tuple[Any, Any]:
        from mlx_lm.models.cache import make_prompt_cache

        cache = make_prompt_cache(self.model)
        return mx.argmax(self._last_logits(prompt, cache)[:, -1], axis=-1, keepdims=True), cache

    def generate(self, prompt: Any, new_tokens: int) -> Any:
        token, cache = self.prefill(prompt)
        tokens = [token]
        for _ in range(new_tokens - 1):
            mx.async_eval(token)
            token = mx.argmax(self._last_logits(token, cache)[:, -1], axis=-1, keepdims=True)
            tokens.append(token)
        return mx.concatenate(tokens, axis=1)

    def first_token(self, prompt: Any) -> Any:
        return self.prefill(prompt)[0]

    def logits(self, tokens: Any) -> Any:
        return self.model(tokens)

    def weight_bytes(self) -> int:
        from mlx.utils import tree_flatten

        return sum(a.nbytes for _, a in tree_flatten(self.model.parameters()))


DECODE_VARIANTS = ("eager", "graph")


def decode_skip_reason(backend: Backend, decode: str) -> str | None:
    if decode not in DECODE_VARIANTS:
        return f"unknown decode variant {decode!r}; known: {', '.join(DECODE_VARIANTS)}"
    if decode == "graph" and backend.framework == "mlx":
        return (
            "decode=graph: mlx-lm's KV cache advances by a Python integer offset every token, which "
            "mx.compile would freeze into the graph; mlx-lm does not compile its decode step"
        )
    if decode == "graph" and backend.torch_device() != "cuda":  # type: ignore[attr-defined]
        return "decode=graph captures the decode step in a CUDA graph: it needs a CUDA device"
    return None


def make_generator(
    backend: Backend,
    config: Any,
    dtype: str,
    checkpoint: Any = None,
    seed: int = 0,
    decode: str = "eager",
    max_tokens: int = 0,
) -> Any:
    torch_model = build_torch_model(config, seed, checkpoint, mapped=not runs_as_built(backend, dtype))
    if backend.framework == "torch":
        if decode == "graph":
            return TorchGraphGenerator(torch_model, backend, dtype, max_tokens)
        return TorchGenerator(torch_model, backend, dtype)
    model = build_mlx_model(config, torch_model, dtype)
    del torch_model
    return MlxGenerator(model, backend, dtype)


def make_prompt(config: Any, length: int, seed: int = 1) -> np.ndarray:
    """A fixed-seed prompt of token ids (tokenization is outside the workload: ids are its input)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, config.vocab_size, size=(1, length), dtype=np.int64)


def generation_bytes(config: Any, dtype: str, prompt: int, new: int, framework: str) -> float:
    """Memory the job plans for: float32 weights to build from, the weights in ``dtype`` (MLX also keeps
    the torch copy while converting), and the KV cache."""
    params = parameter_count(config)
    head_dim = config.hidden_size // config.num_attention_heads
    kv_cache = 2 * config.num_hidden_layers * (prompt + new) * config.num_key_value_heads * head_dim
    width = DTYPE_BYTES[dtype]
    return params * 4 + params * width * (1 if framework == "mlx" else 0) + kv_cache * width


# ---------------------------------------------------------------------------------------------------
# One prepared job per benchmark process
# ---------------------------------------------------------------------------------------------------
class GenerationJob:
    def __init__(
        self, backend_name: str, model: str, dtype: str, decode: str, config: GenerationConfig
    ) -> None:
        self.backend = eager_backend(backend_name, "LLM generation")
        reason = decode_skip_reason(self.backend, decode)
        if reason:
            raise NotImplementedError(f"{backend_name}: {reason}")
        require_module("transformers", "LLM generation")
        if self.backend.framework == "mlx":
            require_module("mlx_lm", "LLM generation")
        if dtype not in config.dtypes:
            raise NotImplementedError(f"{dtype}: the {active_profile().name} profile runs {config.dtypes}")
        arch = ARCHITECTURES[model]
        checkpoint = checkpoint_for(arch)
        if checkpoint is not None:
            hf = hf_config(arch, shrink=False, overrides=checkpoint.config)
        else:
            hf = hf_config(arch, shrink=config.shrink)
        needed = generation_bytes(hf, dtype, config.prompt_tokens, config.new_tokens, self.backend.framework)
        require_memory(self.backend, needed, f"{model} generation in {dtype}")
        self.config = config
        started = time.perf_counter()
        self.generator = make_generator(
            self.backend, hf, dtype, checkpoint, decode=decode,
            max_tokens=config.prompt_tokens + config.new_tokens,
        )  # fmt: skip
        self.prompt = self.backend.asarray(make_prompt(hf, config.prompt_tokens), "int64")
        placed = time.perf_counter()
        self.generate()  # warm-up: kernels, allocator caches
        # where the build's time went (harness/jobs.py records it; mtb gpu's closing lines sum it): the
        # first generate of an eager loop took 15-20 s on an H200 where the next ones took 0.7-5.7 s
        self.build_phases = {"model": placed - started, "first generate": time.perf_counter() - placed}

    def first_token(self) -> None:
        self.backend.sync(self.generator.first_token(self.prompt))

    def generate(self) -> Any:
        tokens = self.generator.generate(self.prompt, self.config.new_tokens)
        self.backend.sync(tokens)
        return tokens

    def peak_bytes(self) -> int:
        return peak_bytes(self.backend, self.generate)

    def bandwidth_bytes_per_s(self) -> float:
        """The device's copy bandwidth, measured once in this process (the decode's limit).  Both sides
        divide by the same figure, torch's copy on the job's device (the MLX side has torch too: it is
        built from torch's weights).  MLX has no copy op that runs a kernel: its elementwise stand-in
        reached 3.2 TB/s where torch's copy reached 4.1-4.2 on an H200, and 2.8 GB/s against 11 on
        the 2-core VM."""
        if not hasattr(self, "_bandwidth"):
            self._bandwidth = peaks.copy_bandwidth(self._copy_backend())
        return self._bandwidth

    def _copy_backend(self) -> Backend:
        if torch is None:
            return self.backend
        if peaks.device_class(self.backend) == "cpu":
            return get_backend("torch-cpu")
        if torch.cuda.is_available():
            return get_backend("torch-cuda")
        if torch.backends.mps.is_available():
            return get_backend("torch-mps")
        return self.backend


def decode_tokens_per_s(job: GenerationJob, timings: Mapping[str, list[float]]) -> float:
    """Tokens after the first over the time they add to the prefill (median sample of each)."""
    median = statistics.median
    decode = median(timings["generate_seconds"]) - median(timings["time_to_first_token_seconds"])
    return (job.config.new_tokens - 1) / decode if decode > 0 else math.nan


def decode_bandwidth_fraction(job: GenerationJob, timings: Mapping[str, list[float]]) -> float:
    """Decode tokens/s over the bandwidth limit: every token reads the weights once, so no decode runs
    faster than the copy bandwidth over the weights' bytes (unless the weights fit in a cache: the quick
    profile's shrunk models do on large CPU caches)."""
    limit = job.bandwidth_bytes_per_s() / job.generator.weight_bytes()
    return decode_tokens_per_s(job, timings) / limit


LLM_JOB = JobSpec(
    name="LLMGeneration",
    module=__name__,
    preimport=("transformers.models.llama.modeling_llama", "transformers.models.phi.modeling_phi"),
    doc="Greedy generation with a KV cache: prefill (time to first token) and a fixed number of tokens.",
    params=[
        selected_backend_names(),
        list(ARCHITECTURES),
        list(CONFIGS[active_profile().name].dtypes),
        list(DECODE_VARIANTS),
    ],
    param_names=["backend", "model", "dtype", "decode"],
    warmed_at_build=True,  # the build generates once: prefill and every decode step
    build=lambda backend, model, dtype, decode: GenerationJob(
        backend, model, dtype, decode, CONFIGS[active_profile().name]
    ),
    timings={
        "time_to_first_token_seconds": lambda job: job.first_token,
        "generate_seconds": lambda job: job.generate,
    },
    tracks={
        "prefill_tokens_per_s": FromTimings(
            "tokens/s",
            lambda job, t: job.config.prompt_tokens / statistics.median(t["time_to_first_token_seconds"]),
        ),
        "decode_tokens_per_s": FromTimings("tokens/s", decode_tokens_per_s),
        "decode_bandwidth_fraction": FromTimings(
            "fraction of the bandwidth limit", decode_bandwidth_fraction
        ),
        "generate_peak_memory": Track("bytes", GenerationJob.peak_bytes),
        "weights_memory": Track("bytes", lambda job: job.generator.weight_bytes()),
    },
)


class LLMGeneration(job_benchmark(LLM_JOB)):
    def setup_cache(self) -> dict:
        return measure_all(LLM_JOB)
