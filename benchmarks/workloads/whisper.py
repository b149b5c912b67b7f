"""Whisper inference (whisper-tiny architecture): the audio encoder on a log-mel spectrogram, then greedy
decoding of a fixed number of tokens with a KV cache, from the start-of-transcript prompt.

Measured: the encoder alone, the decode alone (from a fixed encoder output: the prompt step, which also
fills the cross-attention cache, plus one step per further token), both together, decode tokens/s and
the peak memory of encode + decode.

The published comparison ran different model variants and pipelines on each side and warmed up only one
of them.  Here one set of weights drives both: the torch model (transformers'
WhisperForConditionalGeneration, random weights under a fixed seed, or a local checkpoint) is copied
into mlx-whisper's Whisper, including the encoder's sinusoidal position table, which mlx-whisper keeps
outside its parameters and computes itself.  The two compute the same function: exact (erf) GELU, the
LayerNorm eps of 1e-5, 1/sqrt(head_dim) attention scaling (MLX splits it between queries and keys),
output logits through the tied token embedding, every weight rounded once from float32 to the timed
dtype.  Both decode loops are written here and do the same work per step (logits of every new position,
argmax, no EOS stop, no token suppression): HF generate() would add its logits processors.  The
spectrogram is computed once, outside every timed region, and both sides warm up before timing.
tests/workloads/test_whisper.py proves equal weights, encoder outputs, prompt logits and greedy tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.harness.backends import Backend, selected_backend_names
from benchmarks.harness.frameworks import mx, torch
from benchmarks.harness.jobs import FromTimings, JobSpec, Track, job_benchmark, measure_all
from benchmarks.harness.profiles import active_profile
from benchmarks.workloads import checkpoints
from benchmarks.workloads.common import (
    conv_torch_to_mlx,
    eager_backend,
    load_mlx,
    peak_bytes,
    require_memory,
    require_module,
    torch_dtype,
    torch_weights,
)

SAMPLE_RATE = 16_000
HOP_LENGTH = 160  # mel frames every 10 ms; the encoder's stride-2 conv halves them into audio positions
# <|startoftranscript|><|en|><|transcribe|><|notimestamps|> of the multilingual Whisper vocabulary
PROMPT = (50258, 50259, 50359, 50363)
CHECKPOINT_MODEL = "whisper-tiny"
DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class WhisperSize:
    """The architecture (WhisperConfig's fields), the audio length and the decode length."""

    d_model: int = 384
    encoder_layers: int = 4
    decoder_layers: int = 4
    encoder_heads: int = 6
    decoder_heads: int = 6
    ffn: int = 1536
    vocab: int = 51865
    n_mels: int = 80
    audio_positions: int = 1500  # max_source_positions: 30 s of audio
    text_positions: int = 448  # max_target_positions
    new_tokens: int = 128
    init_std: float = 0.02  # of the random weights (transformers' Whisper default)

    @property
    def mel_frames(self) -> int:
        return 2 * self.audio_positions

    @property
    def audio_seconds(self) -> float:
        return self.mel_frames * HOP_LENGTH / SAMPLE_RATE

    def hf_config(self) -> Any:
        from transformers import WhisperConfig

        return WhisperConfig(
            vocab_size=self.vocab,
            num_mel_bins=self.n_mels,
            d_model=self.d_model,
            encoder_layers=self.encoder_layers,
            decoder_layers=self.decoder_layers,
            encoder_attention_heads=self.encoder_heads,
            decoder_attention_heads=self.decoder_heads,
            encoder_ffn_dim=self.ffn,
            decoder_ffn_dim=self.ffn,
            max_source_positions=self.audio_positions,
            max_target_positions=self.text_positions,
            activation_function="gelu",
            scale_embedding=False,
            tie_word_embeddings=True,
            dropout=0.0,
            attention_dropout=0.0,
            activation_dropout=0.0,
            init_std=self.init_std,
        )

    @classmethod
    def from_hf_config(cls, config: Any, new_tokens: int) -> WhisperSize:
        return cls(
            d_model=config.d_model,
            encoder_layers=config.encoder_layers,
            decoder_layers=config.decoder_layers,
            encoder_heads=config.encoder_attention_heads,
            decoder_heads=config.decoder_attention_heads,
            ffn=config.encoder_ffn_dim,
            vocab=config.vocab_size,
            n_mels=config.num_mel_bins,
            audio_positions=config.max_source_positions,
            text_positions=config.max_target_positions,
            new_tokens=new_tokens,
        )

    def parameter_count(self) -> int:
        """Parameters of the model, the tied output projection counted once."""
        d = self.d_model
        attention = 4 * d * d + 3 * d  # the key projection has no bias
        mlp = 2 * d * self.ffn + self.ffn + d
        encoder = (
            self.n_mels * d * 3 + d + d * d * 3 + d + self.audio_positions * d
            + self.encoder_layers * (attention + mlp + 2 * 2 * d) + 2 * d
        )  # fmt: skip
        decoder = (
            self.vocab * d + self.text_positions * d
            + self.decoder_layers * (2 * attention + mlp + 3 * 2 * d) + 2 * d
        )  # fmt: skip
        return encoder + decoder

    def planned_bytes(self, dtype: str) -> int:
        """What a job holds at its peak: the float32 torch model, its NumPy copy and the timed model,
        plus the encoder's largest activations (attention scores and probabilities, the MLP)."""
        itemsize = 2 if dtype == "float16" else 4
        weights = self.parameter_count() * (4 + 4 + itemsize)
        attention = 2 * self.encoder_heads * self.audio_positions**2 * itemsize
        activations = attention + 4 * self.audio_positions * (self.ffn + self.d_model) * itemsize
        return weights + activations


# quick: whisper-tiny on 3 s of audio and 16 tokens, so that mlx-cpu (reference BLAS) takes seconds.
CONFIGS = {"quick": WhisperSize(audio_positions=150, new_tokens=16), "full": WhisperSize()}


def synthetic_audio(seconds: float, seed: int = 0) -> np.ndarray:
    """Gliding tones with a syllable-rate envelope over low noise: something speech-like to transcribe."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    signal = np.zeros_like(t)
    for base in (180.0, 440.0, 1250.0, 2600.0):
        glide = base * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.2, 0.8) * t))
        phase = 2 * np.pi * np.cumsum(glide) / SAMPLE_RATE
        signal += rng.uniform(0.1, 0.3) * np.sin(phase)
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 2 * np.pi))
    noise = 0.02 * rng.standard_normal(t.shape)
    return (envelope * signal + noise).astype(np.float32)


def log_mel(size: WhisperSize, seed: int = 0) -> np.ndarray:
    """Whisper's log-mel spectrogram of the synthetic audio, (1, n_mels, mel_frames) float32."""
    from transformers import WhisperFeatureExtractor

    samples = size.mel_frames * HOP_LENGTH
    extractor = WhisperFeatureExtractor(
        feature_size=size.n_mels, sampling_rate=SAMPLE_RATE, hop_length=HOP_LENGTH
    )
    features = extractor(
        synthetic_audio(samples / SAMPLE_RATE, seed),
        sampling_rate=SAMPLE_RATE,
        padding="max_length",
        max_length=samples,
        return_tensors="np",
    )["input_features"]
    assert features.shape == (1, size.n_mels, size.mel_frames), features.shape
    return features.astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# The torch model: from the config with seeded random weights, or from a local checkpoint
# ---------------------------------------------------------------------------------------------------
def random_torch_model(size: WhisperSize, seed: int = 0) -> Any:
    """transformers' initialisation under ``seed``, then biases and LayerNorms moved off their 0/1 start
    so that a mix-up of two of them in the transfer cannot go unnoticed.  The encoder's sinusoidal
    position table stays as Whisper defines it."""
    from transformers import WhisperForConditionalGeneration

    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(size.hf_config()).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(".bias") or "layer_norm" in name:
                noise = torch.randn(parameter.shape, generator=generator)
                parameter.add_(0.02 * noise)
    return model


def checkpoint_config(path: Any) -> Any:
    """The transformers config of a local checkpoint (``CheckpointError`` if it is no Whisper)."""
    from transformers import WhisperConfig

    return WhisperConfig.from_dict(checkpoints.read_config(path, ("whisper",)))


def checkpoint_torch_model(path: Any) -> Any:
    """The torch model of a local Hugging Face Whisper checkpoint, its weights checked and loaded."""
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration(checkpoint_config(path)).eval()
    expected, tied = checkpoints.torch_expected(model)
    checkpoint = checkpoints.load_checkpoint(path, ("whisper",), expected, optional=tied)
    state = {name: torch.from_numpy(value) for name, value in checkpoint.weights.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    left_out = set(missing) - tied
    if left_out or unexpected:
        raise checkpoints.CheckpointError(
            f"{path}: weights left unloaded {sorted(left_out)[:5]}, {unexpected[:5]}"
        )
    return model


def check_equivalent(config: Any) -> None:
    """mlx-whisper hard-codes what transformers makes configurable: refuse a config it cannot mirror."""
    problems = []
    if config.activation_function != "gelu":
        problems.append(f"activation {config.activation_function!r} (mlx-whisper: exact GELU)")
    if config.scale_embedding:
        problems.append("scale_embedding (mlx-whisper does not scale token embeddings)")
    if not config.tie_word_embeddings:
        problems.append("untied output projection (mlx-whisper projects with the token embedding)")
    if not config.encoder_ffn_dim == config.decoder_ffn_dim == 4 * config.d_model:
        problems.append("an MLP width other than 4 * d_model")
    if config.vocab_size <= max(PROMPT):
        problems.append(f"a vocabulary of {config.vocab_size} tokens, without the prompt's {PROMPT}")
    if problems:
        raise NotImplementedError(f"this Whisper config has no mlx-whisper equivalent: {'; '.join(problems)}")


# ---------------------------------------------------------------------------------------------------
# Hugging Face names to mlx-whisper names
# ---------------------------------------------------------------------------------------------------
_MODULES = {
    "model.encoder.conv1": "encoder.conv1",
    "model.encoder.conv2": "encoder.conv2",
    "model.encoder.layer_norm": "encoder.ln_post",
    "model.decoder.embed_tokens": "decoder.token_embedding",
    "model.decoder.layer_norm": "decoder.ln",
}
_BLOCK_PARTS = {
    "self_attn.q_proj": "attn.query",
    "self_attn.k_proj": "attn.key",
    "self_attn.v_proj": "attn.value",
    "self_attn.out_proj": "attn.out",
    "self_attn_layer_norm": "attn_ln",
    "encoder_attn.q_proj": "cross_attn.query",
    "encoder_attn.k_proj": "cross_attn.key",
    "encoder_attn.v_proj": "cross_attn.value",
    "encoder_attn.out_proj": "cross_attn.out",
    "encoder_attn_layer_norm": "cross_attn_ln",
    "fc1": "mlp1",
    "fc2": "mlp2",
    "final_layer_norm": "mlp_ln",
}
# Not parameters on the MLX side: the tied projection is the token embedding, and the encoder's position
# table is an attribute set separately (see MlxWhisper).
_NOT_MLX_PARAMETERS = ("proj_out.weight", "model.encoder.embed_positions.weight")
_BLOCK = re.compile(r"model\.(encoder|decoder)\.layers\.(\d+)\.(.+)")


def mlx_name(name: str) -> str | None:
    """The mlx-whisper name of a transformers Whisper parameter (None: not an MLX parameter)."""
    if name in _NOT_MLX_PARAMETERS:
        return None
    module, leaf = name.rsplit(".", 1)
    if module == "model.decoder.embed_positions":
        return "decoder.positional_embedding"  # a bare array in mlx-whisper, not an Embedding
    if module in _MODULES:
        return f"{_MODULES[module]}.{leaf}"
    block = _BLOCK.fullmatch(module)
    if block and block[3] in _BLOCK_PARTS:
        return f"{block[1]}.blocks.{block[2]}.{_BLOCK_PARTS[block[3]]}.{leaf}"
    raise KeyError(f"no mlx-whisper name for the transformers parameter {name!r}")


# ---------------------------------------------------------------------------------------------------
# The two sides: encode, and greedy decode of a fixed number of tokens with a KV cache
# ---------------------------------------------------------------------------------------------------
class TorchWhisper:
    def __init__(self, model: Any, backend: Backend, dtype: str) -> None:
        self.backend = backend
        self.model = model.to(backend.torch_device(), torch_dtype(dtype)).eval()
        self.prompt = backend.asarray(np.array([PROMPT]), "int64")

    def encode(self, mel: Any) -> Any:
        with torch.inference_mode():
            return self.model.model.encoder(input_features=mel).last_hidden_state

    def logits(self, features: Any, tokens: Any, cache: Any = None) -> tuple[Any, Any]:
        """Logits of every position of ``tokens``, and the cache extended by them."""
        with torch.inference_mode():
            out = self.model(
                encoder_outputs=(features,), decoder_input_ids=tokens, past_key_values=cache, use_cache=True
            )
        return out.logits, out.past_key_values

    def decode(self, features: Any, new_tokens: int) -> Any:
        tokens, cache, generated = self.prompt, None, []
        for _ in range(new_tokens):
            logits, cache = self.logits(features, tokens, cache)
            tokens = logits[:, -1].argmax(dim=-1, keepdim=True)
            generated.append(tokens)
        return torch.cat(generated, dim=1)


class MlxWhisper:
    def __init__(self, model: Any, backend: Backend, dtype: str) -> None:
        from mlx_whisper.whisper import ModelDimensions, Whisper

        config = model.config
        check_equivalent(config)
        dims = ModelDimensions(
            n_mels=config.num_mel_bins,
            n_audio_ctx=config.max_source_positions,
            n_audio_state=config.d_model,
            n_audio_head=config.encoder_attention_heads,
            n_audio_layer=config.encoder_layers,
            n_vocab=config.vocab_size,
            n_text_ctx=config.max_target_positions,
            n_text_state=config.d_model,
            n_text_head=config.decoder_attention_heads,
            n_text_layer=config.decoder_layers,
        )
        self.backend = backend
        mx_dtype = getattr(mx, dtype)
        self.model = Whisper(dims, dtype=mx_dtype)  # dtype of its causal mask and position table
        weights = torch_weights(model)
        # Encoder and decoder separately: the top-level module also holds alignment_heads, an integer
        # array for word timings that is no weight.
        for part in ("encoder", "decoder"):
            load_mlx(
                getattr(self.model, part),
                weights,
                dtype,
                rename=lambda name, part=part: _within(mlx_name(name), part),
                transforms={"conv1.weight": conv_torch_to_mlx, "conv2.weight": conv_torch_to_mlx},
            )
        positions = weights["model.encoder.embed_positions.weight"]
        self.model.encoder._positional_embedding = mx.array(positions).astype(mx_dtype)
        self.prompt = backend.asarray(np.array([PROMPT]), "int32")
        mx.eval(self.model.encoder._positional_embedding, self.model.decoder._mask)

    def encode(self, mel: Any) -> Any:
        return self.model.encoder(mel)

    def logits(self, features: Any, tokens: Any, cache: Any = None) -> tuple[Any, Any]:
        logits, cache, _ = self.model.decoder(tokens, features, kv_cache=cache)
        return logits, cache

    def decode(self, features: Any, new_tokens: int) -> Any:
        tokens, cache, generated = self.prompt, None, []
        for _ in range(new_tokens):
            logits, cache = self.logits(features, tokens, cache)
            tokens = mx.argmax(logits[:, -1], axis=-1, keepdims=True)
            # Start computing this step while the next one is built, as torch's queued kernels on a GPU
            # do (and as mlx-lm's generate does); the caller's sync waits for the last.
            mx.async_eval(tokens)
            generated.append(tokens)
        return mx.concatenate(generated, axis=1)


def _within(name: str | None, part: str) -> str | None:
    prefix = f"{part}."
    return name[len(prefix) :] if name is not None and name.startswith(prefix) else None


def mel_for(backend: Backend, mel: np.ndarray, dtype: str) -> Any:
    """The spectrogram in the layout each side expects: torch (batch, mels, frames), MLX channels-last."""
    if backend.framework == "mlx":
        return backend.asarray(np.ascontiguousarray(mel.transpose(0, 2, 1)), dtype)
    return backend.asarray(mel, dtype)


# ---------------------------------------------------------------------------------------------------
# One prepared job per benchmark process
# ---------------------------------------------------------------------------------------------------
class WhisperJob:
    def __init__(self, backend_name: str, dtype: str, size: WhisperSize, seed: int = 0) -> None:
        self.backend = eager_backend(backend_name, "Whisper inference")
        require_module("transformers", "Whisper")
        if self.backend.framework == "mlx":
            require_module("mlx_whisper", "Whisper")
        if dtype not in DTYPES:
            raise NotImplementedError(f"dtype {dtype!r}: the Whisper workload runs {', '.join(DTYPES)}")
        path = checkpoints.user_checkpoint(CHECKPOINT_MODEL)
        what = f"Whisper ({active_profile().name} profile)"
        if path is not None:
            config = checkpoint_config(path)
            check_equivalent(config)
            # A checkpoint brings its own sizes, its audio length (30 s for OpenAI's) included.
            size = WhisperSize.from_hf_config(config, size.new_tokens)
            what = f"Whisper checkpoint {path}"
        require_memory(self.backend, size.planned_bytes(dtype), what)
        model = random_torch_model(size, seed) if path is None else checkpoint_torch_model(path)
        check_equivalent(model.config)
        self.size, self.dtype = size, dtype
        side = MlxWhisper if self.backend.framework == "mlx" else TorchWhisper
        self.side = side(model, self.backend, dtype)
        del model
        self.mel = mel_for(self.backend, log_mel(size, seed), dtype)
        self.features = self.side.encode(self.mel)
        self.backend.sync(self.features)
        self.transcribe()  # warm-up, outside every timed region

    def encode(self) -> None:
        self.backend.sync(self.side.encode(self.mel))

    def decode(self) -> None:
        self.backend.sync(self.side.decode(self.features, self.size.new_tokens))

    def transcribe(self) -> None:
        self.backend.sync(self.side.decode(self.side.encode(self.mel), self.size.new_tokens))

    def transcribe_peak_bytes(self) -> int:
        return peak_bytes(self.backend, self.transcribe)


WHISPER_JOB = JobSpec(
    name="WhisperInference",
    module=__name__,
    preimport=("transformers.models.whisper.modeling_whisper",),
    doc="whisper-tiny: encoder time, greedy decode time and tokens/s, encode + decode time and peak memory.",
    params=[selected_backend_names(), list(DTYPES)],
    param_names=["backend", "dtype"],
    build=lambda backend, dtype: WhisperJob(backend, dtype, CONFIGS[active_profile().name]),
    timings={
        "encoder_seconds": lambda job: job.encode,
        "decode_seconds": lambda job: job.decode,
        "transcribe_total_seconds": lambda job: job.transcribe,
    },
    tracks={
        "decode_tokens_per_s": FromTimings(
            "tokens/s", lambda job, t: job.size.new_tokens / min(t["decode_seconds"])
        ),
        "peak_memory": Track("bytes", WhisperJob.transcribe_peak_bytes),
    },
)


class WhisperInference(job_benchmark(WHISPER_JOB)):
    def setup_cache(self) -> dict:
        return measure_all(WHISPER_JOB)
