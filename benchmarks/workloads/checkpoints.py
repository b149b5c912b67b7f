"""Local checkpoints in the Hugging Face layout, for users who have real weights on disk.

Nothing is ever downloaded: by default every workload builds its model from a config with random
weights.  ``MTB_CHECKPOINT_<MODEL>`` (for example ``MTB_CHECKPOINT_TINYLLAMA=/models/TinyLlama-1.1B``)
points a workload at a directory holding ``config.json`` and ``model.safetensors`` (or a sharded
``model.safetensors.index.json``, or ``pytorch_model.bin``).  Every problem is a ``CheckpointError`` that
names the file and what was expected.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import settings
from benchmarks.harness.frameworks import torch

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


class CheckpointError(ValueError):
    """A checkpoint directory that is missing, incomplete or of another architecture."""


@dataclass
class Checkpoint:
    path: Path
    config: dict[str, Any]
    weights: dict[str, np.ndarray]  # float32 NumPy, Hugging Face names


def checkpoint_env(model: str) -> str:
    return settings.checkpoint_variable(model)


def user_checkpoint(model: str) -> Path | None:
    """The directory the user named for ``model``, or None (build from the config)."""
    try:
        return settings.read(checkpoint_env(model))
    except settings.SettingError as exc:
        raise CheckpointError(str(exc)) from None


def read_config(path: Path, model_types: Iterable[str]) -> dict[str, Any]:
    model_types = tuple(model_types)
    if not path.is_dir():
        raise CheckpointError(
            f"checkpoint directory {path} does not exist (or is not a directory): point it at a folder "
            f"with config.json and one of {', '.join(WEIGHT_FILES)}"
        )
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{config_file} is missing: a Hugging Face checkpoint needs its config.json")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{config_file} is not valid JSON: {exc}") from None
    model_type = config.get("model_type")
    if model_type not in model_types:
        raise CheckpointError(
            f"{config_file} has model_type {model_type!r}; this workload expects "
            f"{' or '.join(repr(t) for t in model_types)}"
        )
    return config


def _tensor_to_numpy(tensor: Any) -> np.ndarray:
    return tensor.detach().float().cpu().numpy() if tensor.is_floating_point() else tensor.cpu().numpy()


def read_weights(path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """The weights of ``path`` as float32 NumPy arrays, and the file they came from."""
    single, index, pickle_file = (path / name for name in WEIGHT_FILES)
    if single.is_file():
        return single, _read_safetensors(single)
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
        if not shards:
            raise CheckpointError(f"{index} has no weight_map: the shard index is incomplete")
        weights: dict[str, np.ndarray] = {}
        for shard in shards:
            shard_file = path / shard
            if not shard_file.is_file():
                raise CheckpointError(f"{shard_file} is missing: {index} lists it as a shard")
            weights |= _read_safetensors(shard_file)
        return index, weights
    if pickle_file.is_file():
        state = torch.load(pickle_file, map_location="cpu", weights_only=True)
        return pickle_file, {name: _tensor_to_numpy(t) for name, t in state.items()}
    raise CheckpointError(f"{path} has no weights: expected one of {', '.join(WEIGHT_FILES)}")


def _read_safetensors(file: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(file), framework="pt") as handle:
            return {name: _tensor_to_numpy(handle.get_tensor(name)) for name in handle.keys()}  # noqa: SIM118
    except SafetensorError as exc:
        raise CheckpointError(f"{file} is not a readable safetensors file: {exc}") from None


def check_weights(
    file: Path, weights: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]], optional: Iterable[str]
) -> dict[str, np.ndarray]:
    """``weights`` restricted to ``expected``; an error names the missing keys and wrong shapes.

    ``optional`` are names the model can do without (tied output embeddings, buffers it recomputes).
    Extra keys in the file are ignored (rotary caches, other heads) and listed only when nothing fits.
    """
    optional = set(optional)
    missing = sorted(name for name in expected if name not in weights and name not in optional)
    if missing:
        extra = sorted(set(weights) - set(expected))
        hint = f"; the file has other keys, e.g. {extra[:5]}" if extra else ""
        raise CheckpointError(
            f"{file} lacks {len(missing)} of the {len(expected)} expected keys, e.g. {missing[:5]}{hint}: "
            "is the checkpoint incomplete or of another architecture?"
        )
    wrong = [
        f"{name}: file {weights[name].shape}, model {shape}"
        for name, shape in expected.items()
        if name in weights and tuple(weights[name].shape) != tuple(shape)
    ]
    if wrong:
        raise CheckpointError(f"{file} has weights of the wrong shape for its config.json: {wrong[:5]}")
    return {name: weights[name] for name in expected if name in weights}


def load_checkpoint(
    path: Path, model_types: Iterable[str], expected: dict[str, tuple[int, ...]], optional: Iterable[str] = ()
) -> Checkpoint:
    """Config and checked weights of a local Hugging Face checkpoint."""
    config = read_config(path, model_types)
    file, weights = read_weights(path)
    return Checkpoint(path, config, check_weights(file, weights, expected, optional))


def torch_expected(module: Any) -> tuple[dict[str, tuple[int, ...]], set[str]]:
    """Parameter names and shapes a torch module expects, and the names that are tied to another one
    (a checkpoint may omit those)."""
    state = module.state_dict()
    seen: dict[int, str] = {}
    tied: set[str] = set()
    for name, tensor in state.items():
        pointer = tensor.data_ptr()
        if pointer in seen:
            tied.add(name)
        else:
            seen[pointer] = name
    return {name: tuple(t.shape) for name, t in state.items()}, tied
