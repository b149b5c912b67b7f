"""The offline GPU run: a bundle of what a CUDA host lacks, made where the package index is reachable, and
its installation on the host.

``mtb bundle`` downloads the wheels (MLX with its CUDA build, asv, mlx-lm, mlx-whisper and the few pure-
Python packages they need beyond a CUDA image with torch and transformers) for the host's Python and
platform, adds the release timeline (asv records a run against one of its commits), packs everything in
one archive and splits it into parts of a given size, with a manifest of checksums.  Carry the folder (or
its parts one by one) to the host; ``mtb gpu --bundle FOLDER`` checks the manifest against the Python
it runs in, joins and verifies the parts, installs the wheels into a folder of their own and links MLX's
CUDA libraries to torch's (MLX's CUDA wheel loads them from ``nvidia/`` beside itself).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

MANIFEST = "bundle.json"
ARCHIVE = "bundle.tar"
FORMAT = 1
# What a CUDA host with torch and transformers lacks to run the suite (pinned as the CPU machine's).
REQUIREMENTS = (
    "mlx==0.32.4",
    "mlx-cuda-13==0.32.4",
    "asv==0.6.6",
    "asv-runner==0.3.2",
    "mlx-lm==0.32.2",
    "mlx-whisper==0.4.3",
    "json5==0.17.3",
    "importlib-metadata==8.7.0",
    "more-itertools==10.8.0",
    "nvidia-ml-py==13.615.71",
)
# pip matches platform tags exactly: every manylinux level a glibc 2.35 host accepts that wheels use
PLATFORMS = (
    "manylinux_2_35_x86_64", "manylinux_2_34_x86_64", "manylinux_2_31_x86_64", "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64",
)  # fmt: skip
TIMELINE_PREFIX = "timeline/"


class BundleError(ValueError):
    """A bundle that cannot be made or used here; the message is the one line to show."""


@dataclass
class Part:
    file: str
    size: int
    sha256: str


@dataclass
class Manifest:
    python: str  # "3.12"
    platforms: list[str]
    wheels: list[str]
    archive_sha256: str
    archive_size: int
    parts: list[Part] = field(default_factory=list)
    timeline: bool = False
    format: int = FORMAT

    def write(self, folder: Path) -> None:
        (folder / MANIFEST).write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        try:
            data = json.loads(path.read_text())
            parts = [Part(**p) for p in data.pop("parts")]
            manifest = cls(**data, parts=parts)
        except FileNotFoundError:
            raise BundleError(
                f"{path} is missing: point --bundle at the folder `mtb bundle --out` made (with its parts)"
            ) from None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise BundleError(f"{path} is not a bundle manifest ({exc}): make the bundle again") from None
        if manifest.format != FORMAT:
            raise BundleError(f"{path}: bundle format {manifest.format}, this reads {FORMAT}: make it again")
        return manifest


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------
# Making a bundle (where the package index is reachable)
# ---------------------------------------------------------------------------------------------------
def pip_download(requirements: Sequence[str], python: str, dest: Path) -> None:
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
        "--python-version", python, "--implementation", "cp", "--dest", str(dest),
        *(arg for platform in PLATFORMS for arg in ("--platform", platform)), *requirements,
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        last = [line for line in out.stderr.splitlines() if line.startswith("ERROR")] or ["(no message)"]
        raise BundleError(f"pip could not download the wheels for Python {python}: {last[-1]}")


def split(archive: Path, folder: Path, part_bytes: int | None) -> list[Part]:
    """``archive`` cut into parts of at most ``part_bytes`` (one part when None), in ``folder``."""
    parts = []
    size = archive.stat().st_size
    step = part_bytes or max(size, 1)
    with archive.open("rb") as source:
        index = 0
        while True:
            block = source.read(step)
            if not block and index:
                break
            name = f"{ARCHIVE}.part-{index:03d}"
            (folder / name).write_bytes(block)
            parts.append(Part(name, len(block), hashlib.sha256(block).hexdigest()))
            index += 1
            if len(block) < step:
                break
    return parts


def make(
    out: Path,
    python: str,
    part_mb: float | None,
    timeline: Path | None,
    download: Callable[[Sequence[str], str, Path], None] = pip_download,
    requirements: Sequence[str] = REQUIREMENTS,
) -> Manifest:
    """Download, pack, split; the folder ``out`` ends up holding the manifest and the parts only."""
    if part_mb is not None and part_mb <= 0:
        raise BundleError(f"--part-mb {part_mb}: a part must be larger than 0 MB")
    if not re.fullmatch(r"3\.\d+", python):
        raise BundleError(f"--python {python!r}: give the host's Python as major.minor, e.g. 3.12")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheels_dir = Path(tmp) / "wheels"
        wheels_dir.mkdir()
        download(requirements, python, wheels_dir)
        wheels = sorted(p.name for p in wheels_dir.glob("*.whl"))
        if not wheels:
            raise BundleError("pip downloaded no wheels")
        archive = Path(tmp) / ARCHIVE
        with tarfile.open(archive, "w") as tar:
            for name in wheels:
                tar.add(wheels_dir / name, arcname=f"wheels/{name}")
            if timeline is not None:
                tar.add(timeline, arcname=TIMELINE_PREFIX.rstrip("/"))
        part_bytes = int(part_mb * 2**20) if part_mb else None
        staged = Path(tmp) / "parts"
        staged.mkdir()
        manifest = Manifest(
            python, list(PLATFORMS), wheels, sha256_of(archive), archive.stat().st_size,
            split(archive, staged, part_bytes), timeline is not None,
        )  # fmt: skip
        # the previous bundle in ``out`` is replaced only now that the new one is complete
        for stale in [*out.glob(f"{ARCHIVE}.part-*"), out / MANIFEST]:
            stale.unlink(missing_ok=True)
        for part in manifest.parts:
            shutil.move(staged / part.file, out / part.file)
    manifest.write(out)
    return manifest


# ---------------------------------------------------------------------------------------------------
# Using a bundle (on the host)
# ---------------------------------------------------------------------------------------------------
def check_python(manifest: Manifest, running: str | None = None) -> None:
    machine = platform.machine()
    if machine and not any(p.endswith(machine) for p in manifest.platforms):
        raise BundleError(
            f"the bundle holds wheels for {manifest.platforms[0]}, this host is {machine}: make one for "
            "this platform (tools/bundle.py PLATFORMS) where PyPI is reachable"
        )
    here = running or f"{sys.version_info.major}.{sys.version_info.minor}"
    if manifest.python != here:
        raise BundleError(
            f"the bundle was made for Python {manifest.python} and this is Python {here}: make one for this "
            f"host with `python3 -m tools.mtb bundle --python {here}` where PyPI is reachable"
        )


def joined(folder: Path, manifest: Manifest, into: Path) -> Path:
    """The parts checked one by one and joined into the archive, which is checked whole."""
    missing = [p.file for p in manifest.parts if not (folder / p.file).is_file()]
    if missing:
        raise BundleError(
            f"{len(missing)} of {len(manifest.parts)} bundle parts are not in {folder} "
            f"({', '.join(missing)}): copy every part beside bundle.json"
        )
    archive = into / ARCHIVE
    with archive.open("wb") as target:
        for part in manifest.parts:
            data = (folder / part.file).read_bytes()
            if len(data) != part.size or hashlib.sha256(data).hexdigest() != part.sha256:
                raise BundleError(f"{folder / part.file} is damaged or from another bundle: copy it again")
            target.write(data)
    if sha256_of(archive) != manifest.archive_sha256:
        raise BundleError("the joined bundle does not match its manifest: copy the parts again")
    return archive


def install(folder: Path, site: Path, timeline: Path, log: Callable[[str], None] = print) -> Manifest:
    """Install the bundle's wheels into ``site`` (once per bundle) and its timeline at ``timeline`` (if
    none is there)."""
    manifest = Manifest.read(folder)
    check_python(manifest)
    marker = site / ".mtb-bundle"
    if marker.exists() and marker.read_text().strip() == manifest.archive_sha256:
        log(f"bundle already installed in {site}")
        return manifest
    if site.exists() and any(site.iterdir()) and not marker.exists():
        raise BundleError(
            f"{site} holds files no bundle installed: give --site a new or empty folder (it is replaced "
            "whenever another bundle is installed)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        archive = joined(folder, manifest, Path(tmp))
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        archive.unlink()
        wheels = sorted(str(p) for p in (Path(tmp) / "wheels").glob("*.whl"))
        if site.exists():
            shutil.rmtree(site)
        command = [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
            "--disable-pip-version-check", "--target", str(site), *wheels,
        ]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            last = (out.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise BundleError(f"installing the bundle's wheels into {site} failed: {last}")
        log(f"installed {len(wheels)} wheels into {site}")
        if manifest.timeline:
            # the bundle's timeline holds the point of its MLX; points are made deterministically, so
            # results recorded against an earlier copy keep their commits
            if timeline.exists() and not (timeline / ".git").exists():
                raise BundleError(f"{timeline} exists and is not a timeline: remove it and run again")
            if timeline.exists():
                shutil.rmtree(timeline)
            timeline.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(Path(tmp) / TIMELINE_PREFIX.rstrip("/"), timeline)
            log(f"timeline unpacked at {timeline}")
    marker.write_text(manifest.archive_sha256 + "\n")
    return manifest


def torch_nvidia_folder() -> Path | None:
    """The ``nvidia/`` folder of the CUDA libraries torch's wheel depends on (None without one)."""
    import importlib.util

    spec = importlib.util.find_spec("nvidia")
    for location in (spec.submodule_search_locations or []) if spec else []:
        if any((Path(location) / lib).is_dir() for lib in ("cublas", "cu13", "cuda_runtime")):
            return Path(location)
    return None


def link_cuda_libraries(site: Path) -> Path:
    """``site/nvidia`` -> torch's ``nvidia/`` (MLX's CUDA build finds cuBLAS, cuDNN and NVRTC there)."""
    source = torch_nvidia_folder()
    if source is None:
        raise BundleError(
            "no nvidia/ folder of CUDA libraries beside torch: install torch's CUDA 13 build (its nvidia-* "
            "packages hold the libraries MLX's CUDA build loads)"
        )
    link = site / "nvidia"
    if link.is_symlink() or link.exists():
        if link.resolve() == source.resolve():
            return link
        if link.is_symlink():
            link.unlink()
        else:
            raise BundleError(f"{link} is a folder of its own: remove it so it can point at {source}")
    os.symlink(source, link)
    return link


PROBE = """
import json
out = {}
try:
    import torch
    out["torch"] = torch.__version__
    out["torch_cuda_build"] = torch.version.cuda
    out["torch_cuda"] = bool(torch.cuda.is_available())
    if out["torch_cuda"]:
        out["device"] = torch.cuda.get_device_name()
except Exception as exc:
    out["torch_error"] = f"{type(exc).__name__}: {exc}"
try:
    import mlx.core as mx
    out["mlx"] = mx.__version__
    out["mlx_cuda"] = bool(getattr(mx, "cuda", None) is not None and mx.cuda.is_available())
except Exception as exc:
    out["mlx_error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def probe(env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=False)
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise BundleError(f"checking the frameworks failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(lines[-1])


def check_frameworks(found: dict[str, object], site: Path) -> None:
    """One line for the first thing that keeps the GPU run from working."""
    if "torch_error" in found:
        raise BundleError(
            f"torch cannot be imported ({found['torch_error']}): run this in the Python that holds torch"
        )
    if not found.get("torch_cuda"):
        raise BundleError(
            f"torch {found.get('torch')} sees no CUDA device (CUDA build {found.get('torch_cuda_build')}): "
            "run `mtb gpu` on the CUDA host; CPU machines use `python3 -m tools.mtb main`"
        )
    error = str(found.get("mlx_error", ""))
    if error:
        if ".so" in error:
            raise BundleError(
                f"MLX's CUDA build cannot load its libraries ({error}): {site / 'nvidia'} must point at the "
                "nvidia/ folder of a torch built for CUDA 13 (mtb gpu makes that link; check torch's build)"
            )
        raise BundleError(f"MLX cannot be imported from {site} ({error}): make the bundle again")
    if not found.get("mlx_cuda"):
        raise BundleError(
            f"MLX {found.get('mlx')} has no CUDA device here: the bundle must hold mlx-cuda-13 "
            "(`mtb bundle` adds it), and the host a CUDA 13 driver"
        )
