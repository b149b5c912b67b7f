"""Every ``MTB_*`` setting: read, validated and explained in one place.

The suite reads its settings when asv imports it (parameters are fixed at discovery) and again in each
benchmark process; ``mtb`` checks all of them before it starts anything.  A bad value is a
``SettingError`` whose message is one line naming the variable, the value, the choices and the fix.
When asv itself imports the suite with a bad value, the import fails, so asv stops before it runs or
records anything (recorded results stay as they were).  A name that starts with ``MTB_`` but is no
setting (a typo such as ``MTB_BACKEND``) is reported too, since it would otherwise be silently ignored.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BACKEND_NAMES = (
    "mlx-cpu",
    "mlx-gpu",
    "mlx-gpu-compiled",
    "torch-cpu",
    "torch-cuda",
    "torch-mps",
    "torch-compile",
)
# Where a backend runs, from its name alone (a report reads results of other machines): torch-compile
# follows the machine, a GPU where the same run or results hold a GPU backend.
BACKEND_DEVICE_CLASS = {
    "mlx-cpu": "cpu", "torch-cpu": "cpu", "mlx-gpu": "gpu", "mlx-gpu-compiled": "gpu",
    "torch-cuda": "gpu", "torch-mps": "gpu",
}  # fmt: skip


def device_class_of_name(name: str, names_alongside: set[str] | list[str]) -> str | None:
    if name == "torch-compile":
        gpu = any(BACKEND_DEVICE_CLASS.get(n) == "gpu" for n in names_alongside)
        return "gpu" if gpu else "cpu"
    return BACKEND_DEVICE_CLASS.get(name)


PROFILE_NAMES = ("quick", "full")
FLOAT32_MATMUL_CHOICES = ("ieee", "tf32")
# models a local checkpoint can replace: MTB_CHECKPOINT_<MODEL> (benchmarks/workloads/checkpoints.py)
CHECKPOINT_MODELS = ("tinyllama", "phi-2", "whisper-tiny", "bert-tiny", "bert-base-cased", "bert-large-cased")


# The input cache (MTB_INPUT_CACHE) leaves this fraction of its disk free, removing its own files.
INPUT_CACHE_FREE_FRACTION = 0.10


class SettingError(ValueError):
    """A setting with a value that cannot be used; the message is the one line to show."""


def _choice(name: str, choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise SettingError(
                f"{name}={raw!r} is not one of {', '.join(choices)}; set one of those or unset it"
            )
        return value

    return parse


def _backend_list(name: str) -> Callable[[str], list[str]]:
    def parse(raw: str) -> list[str]:
        value = raw.strip()
        if value in ("", "all"):
            return list(BACKEND_NAMES)
        names = [n.strip() for n in value.split(",") if n.strip()]
        unknown = [n for n in names if n not in BACKEND_NAMES]
        if unknown or not names:
            raise SettingError(
                f"{name}={raw!r} names unknown backend(s) {', '.join(unknown) or '(none)'}; "
                f"use a comma list of {', '.join(BACKEND_NAMES)}, or all"
            )
        return list(dict.fromkeys(names))

    return parse


def _positive_int(name: str, what: str) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = raw.strip()
        if not value.isdigit() or int(value) < 1:
            raise SettingError(f"{name}={raw!r} must be a whole number of {what}, 1 or more; e.g. {name}=2")
        return int(value)

    return parse


def _cache_folder(name: str) -> Callable[[str], Path | None]:
    def parse(raw: str) -> Path | None:
        value = raw.strip()
        if value.lower() == "off":
            return None
        path = Path(value).expanduser()
        if path.exists() and not path.is_dir():
            raise SettingError(f"{name}={raw!r} is a file, not a folder: name a folder, or off")
        return path

    return parse


def _folder(name: str) -> Callable[[str], Path]:
    def parse(raw: str) -> Path:
        path = Path(raw.strip()).expanduser()
        if path.exists() and not path.is_dir():
            raise SettingError(f"{name}={raw!r} is a file, not a folder: name a folder (made if missing)")
        return path

    return parse


def _positive_number(name: str, what: str) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise SettingError(f"{name}={raw!r} must be a number of {what} above 0; e.g. {name}=24")
        return value

    return parse


def _machine_name(name: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        if not value.strip(".") or not all(c.isalnum() or c in "-_." for c in value):
            raise SettingError(
                f"{name}={raw!r} is not a machine name: use letters, digits, '-', '_' and '.' only"
            )
        return value

    return parse


def _seed(name: str) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = raw.strip()
        if not value.isdigit():
            raise SettingError(f"{name}={raw!r} must be a whole number (the seed printed by an earlier run)")
        return int(value)

    return parse


def _directory(name: str) -> Callable[[str], Path]:
    def parse(raw: str) -> Path:
        path = Path(raw.strip()).expanduser()
        if not path.is_dir():
            raise SettingError(
                f"{name}: checkpoint directory {path} does not exist (or is not a directory): point it "
                "at a Hugging Face folder with config.json and its weights, or unset it"
            )
        return path

    return parse


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str
    parse: Callable[[str], Any]


def _declare() -> dict[str, Setting]:
    items = [
        Setting("MTB_PROFILE", "quick", "size profile: quick or full", _choice("MTB_PROFILE", PROFILE_NAMES)),
        Setting(
            "MTB_BACKENDS", "all", "comma list of backends the suite is parameterised over",
            _backend_list("MTB_BACKENDS"),
        ),
        Setting(
            "MTB_THREADS", str(os.cpu_count() or 1), "torch CPU threads",
            _positive_int("MTB_THREADS", "CPU threads"),
        ),
        Setting(
            "MTB_FLOAT32_MATMUL", "ieee", "float32 matmul precision on both sides: ieee or tf32",
            _choice("MTB_FLOAT32_MATMUL", FLOAT32_MATMUL_CHOICES),
        ),
        Setting(
            "MTB_INPUT_CACHE", str(Path.home() / ".cache" / "mlx-torch-bench" / "inputs"),
            "folder of the ops' rounded inputs, made once and reused by every process (off: none)",
            _cache_folder("MTB_INPUT_CACHE"),
        ),
        Setting(
            "MTB_INPUT_CACHE_GB", "24",
            f"most the input cache holds, in GB: files unread for days go first, then other ops' most "
            f"recently used, as runs read them in one order ({INPUT_CACHE_FREE_FRACTION:.0%} of its disk "
            f"is kept free)",
            _positive_number("MTB_INPUT_CACHE_GB", "gigabytes"),
        ),
        Setting(
            "MTB_SOURCE_CACHE", str(Path.home() / ".cache" / "mlx-torch-bench" / "source"),
            "source mode: folder of the wheels built per commit, their build records and the compiler "
            "cache (tools/source_build.py)",
            _folder("MTB_SOURCE_CACHE"),
        ),
        Setting(
            "MTB_MACHINE", platform.node() or "unknown-host",
            "the asv machine name the run facts are filed under (mtb gpu sets it)",
            _machine_name("MTB_MACHINE"),
        ),
        Setting("MTB_PARITY_SEED", "", "seed of the parity tests' inputs", _seed("MTB_PARITY_SEED")),
        Setting(
            "MTB_TEST_BACKENDS", "mlx-cpu,torch-cpu", "backends the tests check",
            _backend_list("MTB_TEST_BACKENDS"),
        ),
    ]  # fmt: skip
    for model in CHECKPOINT_MODELS:
        name = checkpoint_variable(model)
        items.append(Setting(name, "", f"local checkpoint folder for {model}", _directory(name)))
    return {s.name: s for s in items}


def checkpoint_variable(model: str) -> str:
    return f"MTB_CHECKPOINT_{model.upper().replace('-', '_')}"


SETTINGS = _declare()


def read(name: str, env: Mapping[str, str] | None = None) -> Any:
    """The parsed value of a setting (its default when unset or empty); ``SettingError`` if bad."""
    setting = SETTINGS[name]
    raw = (os.environ if env is None else env).get(name, "")
    if not raw.strip():
        if not setting.default:
            return None
        raw = setting.default
    return setting.parse(raw)


# what the suite itself reads: checked when it is imported (asv's discovery and every benchmark process)
SUITE_SETTINGS = (
    "MTB_PROFILE", "MTB_BACKENDS", "MTB_THREADS", "MTB_FLOAT32_MATMUL", "MTB_INPUT_CACHE",
    "MTB_INPUT_CACHE_GB", "MTB_MACHINE",
)  # fmt: skip


def require_valid(names: tuple[str, ...] = SUITE_SETTINGS) -> None:
    """Raise the first bad setting's ``SettingError``."""
    for name in names:
        read(name)


def problems(env: Mapping[str, str] | None = None) -> list[str]:
    """One line per bad or unknown ``MTB_*`` variable in ``env`` (the process environment by default)."""
    env = os.environ if env is None else env
    found = []
    for name in sorted(k for k in env if k.startswith("MTB_")):
        if name not in SETTINGS:
            found.append(f"{name} is not a setting of this suite (a typo?); known: {', '.join(SETTINGS)}")
            continue
        try:
            read(name, env)
        except SettingError as exc:
            found.append(str(exc))
    return found
