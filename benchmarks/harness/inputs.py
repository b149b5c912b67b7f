"""An op's inputs, made once per (op, case, dtype, seed) and kept on disk for every later process.

asv runs each round and each metric of a combination in a fresh process.  Drawing the inputs again in
each (float64 normal draws, rounding to the dtype) took 5.0-5.6 s for an 8192 matrix product on a CUDA
host, more than the samples themselves.  Here the rounded inputs are stored in their narrowest exact
form (float32 holds every float32, float16 and bfloat16 value; integers as drawn) and read back by
later processes.  The key covers everything that decides the values: the op, the case's label, the
dtype, the seed, and the source of the op's input maker and of the rounding, so editing either makes
new inputs rather than reusing stale ones.  The float64 copy that parity compares against is made only
where parity is measured (``as_float64``).

``MTB_INPUT_CACHE`` names the folder (``off`` makes the inputs in every process, as before).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import parity, settings

Arrays = tuple[np.ndarray, ...]

# Arrays are kept in NumPy's own format, saved one after another in one file after a count of them, and
# read straight into memory; a reference is one array, mapped instead.  Comparing an output with a
# 100M-element float64 reference took 0.64-1.00 s here when the reference was read back from a zip
# (``np.savez``) and 0.23 s mapped; the suite's largest reference is 8.2 GB (MatMul 1e6x64 @ 64x1024),
# compared once per backend and dtype.
SUFFIX = ".npy"
# Part of every file's key: a checkout that writes another layout never reads this one's files, nor
# this one its (checkouts and tests of different versions share the cache folder).
FILE_FORMAT = "count-then-arrays-1"

# The cache removes files (last use is the modification time, which every read renews) to stay within
# MTB_INPUT_CACHE_GB and to leave a fraction of its disk free (settings.py).  The full profile's inputs
# and references add up to about 74 GB (from the ops' byte counts), the largest op's (SDPA, read by its
# four backends in turn) to about 17 GB; unbounded, a full run filled a lent GPU host's 64 GB of free
# disk, and the runs after it failed.  So a full run cannot keep everything, and it reads the cache in
# the same order every time: removing the least recently used file would remove each one just before
# the next run needs it, and every run would draw everything again.  Instead, of the files a run still
# reads, the most recently used goes first (the next run needs it last), and each run draws only part
# again.  The order of removal (``_removal_order``): temporary files left by killed writers; files no
# one has read for ABANDONED_SECONDS (an edited maker, reference or format, the other profile, older
# weights), the oldest first; other ops' files, the most recently used first, except those read in the
# last IN_USE_SECONDS (another process may be reading them, and a mapped file's blocks are freed only
# when its reader lets go), which go after them, the oldest first; last, the files of the op being
# measured (its name starts theirs), the oldest first.
# A temporary file no writer has touched for this long was left by a killed process.
STALE_PARTIAL_SECONDS = 3600.0
# A cache file no run has read for this long is taken as abandoned (runs are nightly or more often).
ABANDONED_SECONDS = 3 * 86400.0
# Another op's file read this recently may be in another process's hands.
IN_USE_SECONDS = 600.0


@functools.cache
def _source(fn: Callable[..., object]) -> str:
    """A function's source (read once per process: every case's key, dtype and reference needs it)."""
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):  # a lambda made at run time: its name and code object instead
        return f"{getattr(fn, '__qualname__', fn)!r}:{getattr(fn, '__code__', None)!r}"


def cache_key(op: str, case_label: str, dtype: str, seed: int, maker: Callable[..., object]) -> str:
    """``case_label`` should name the case completely: the suite passes its shapes and options too."""
    parts = (FILE_FORMAT, op, case_label, dtype, str(seed), _source(maker), _source(parity.quantize))
    text = "\n".join(parts)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def narrow(array: np.ndarray) -> np.ndarray:
    """A rounded input in its narrowest exact storage: float32 for every float dtype the suite uses."""
    return array.astype(np.float32) if array.dtype.kind == "f" else array


def as_float64(arrays: Arrays) -> Arrays:
    """The float64 view the reference is computed in (integers stay integers)."""
    return tuple(a.astype(np.float64) if a.dtype.kind == "f" else a for a in arrays)


def make(rng_seed: int, maker: Callable[[np.random.Generator], Arrays], dtype: str) -> Arrays:
    return rounded(maker(np.random.default_rng(rng_seed)), dtype)


def rounded(drawn: Arrays, dtype: str) -> Arrays:
    return tuple(narrow(parity.quantize(a, dtype)) for a in drawn)


def _read(path: Path) -> Arrays | None:
    """The arrays stored at ``path`` by ``_store``, read into memory; None if the file is missing or
    damaged (it is then made again)."""
    if not path.exists():
        return None
    try:
        with path.open("rb") as handle:
            count = np.load(handle, allow_pickle=False)
            if count.shape != (1,) or count.dtype != np.int64 or count[0] < 1:
                return None
            arrays = tuple(np.load(handle, allow_pickle=False) for _ in range(int(count[0])))
            if handle.read(1):
                return None
    except Exception:  # whatever a damaged header makes NumPy raise
        return None
    touch(path)
    return arrays


def _read_mapped(path: Path) -> np.ndarray | None:
    """The one array stored at ``path``, mapped from the file rather than read: processes that compare
    against the same reference share the page cache and copy nothing."""
    if not path.exists():
        return None
    try:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception:
        return None
    touch(path)
    return mapped


def _store(path: Path, arrays: Arrays) -> None:
    """``arrays`` after their count, which tells a file cut short between two arrays from a whole one."""

    def write(handle: Any) -> None:
        np.save(handle, np.array([len(arrays)], dtype=np.int64), allow_pickle=False)
        for array in arrays:
            np.save(handle, array, allow_pickle=False)

    store_atomically(path, write, sum(a.nbytes for a in arrays))


def _store_one(path: Path, array: np.ndarray) -> None:
    """One array as a plain ``.npy`` file, which ``_read_mapped`` maps."""
    store_atomically(path, lambda handle: np.save(handle, array, allow_pickle=False), array.nbytes)


def touch(path: Path) -> None:
    """Mark a cached file as just used (its last use decides when the cache removes it)."""
    with contextlib.suppress(OSError):
        os.utime(path)


def _is_cache_file(name: str) -> bool:
    """The cache's own files, the only ones it ever removes (the folder may be one a user named)."""
    return name.endswith((SUFFIX, ".npz", ".partial")) or (
        name.startswith("weights-") and name.endswith(".pt")
    )


def owner(name: str) -> str:
    """Whose a cache file is: the op its name starts with (``weights`` for every model's weights)."""
    return name.split("-", 1)[0]


def make_room(folder: Path, incoming: int, keep: str | None = None) -> bool:
    """Remove files of the cache ``folder`` until ``incoming`` more bytes keep it within
    MTB_INPUT_CACHE_GB and leave ``settings.INPUT_CACHE_FREE_FRACTION`` of its disk free, in the order
    the module's note gives (``keep``: the op being measured, whose files go last).  Nothing is removed
    when even that would not make room (False)."""
    limit = settings.read("MTB_INPUT_CACHE_GB") * 1e9
    try:
        disk = shutil.disk_usage(folder)
        entries = list(os.scandir(folder))
    except OSError:
        return False
    now = time.time()
    held = 0
    removable = []  # (removal order, bytes, path)
    for entry in entries:
        try:
            if not (_is_cache_file(entry.name) and entry.is_file()):
                continue
            info = entry.stat()
        except OSError:  # removed by another process since the listing
            continue
        held += info.st_size
        order = _removal_order(entry.name, now - info.st_mtime, keep)
        if order is not None:
            removable.append((order, info.st_size, Path(entry.path)))
    # A removed file that another process still has open or mapped frees its blocks only when that
    # process lets go, so ``free`` may run ahead of the disk here; files read recently go late for that
    # reason, and the free fraction absorbs the rest.
    free, keep_free = disk.free, disk.total * settings.INPUT_CACHE_FREE_FRACTION

    def fits(held: float, free: float) -> bool:
        return held + incoming <= limit and free - incoming >= keep_free

    reclaimable = sum(size for _, size, _ in removable)
    if not fits(held - reclaimable, free + reclaimable):
        return False
    for _, size, path in sorted(removable, key=lambda item: item[0]):
        if fits(held, free):
            break
        with contextlib.suppress(OSError):
            path.unlink()
            held, free = held - size, free + size
    return fits(held, free)


def _removal_order(name: str, age: float, keep: str | None) -> tuple[int, float] | None:
    """Sort key of the cache file ``name`` last written or read ``age`` seconds ago, ``keep`` being the
    op measured (the module's note gives the order); None for a temporary file still being written."""
    if name.endswith(".partial"):
        return (0, 0.0) if age >= STALE_PARTIAL_SECONDS else None
    if keep is not None and owner(name) == keep:
        return (4, -age)
    if age >= ABANDONED_SECONDS:
        return (1, -age)
    if age >= IN_USE_SECONDS:
        return (2, age)
    return (3, -age)


def store_atomically(path: Path, write: Callable[[Any], None], size: int) -> None:
    """``write(handle)`` (about ``size`` bytes) into a file moved to ``path`` when complete: a reader
    never sees half a file.  Room is made first (``make_room``).  A file that does not fit, a disk that
    is read-only or full, or a writer that fails (torch.save raises RuntimeError) costs the cache, never
    the run; the temporary file goes in every case."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not make_room(path.parent, size, keep=owner(path.name)):
            return
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".partial", delete=False) as handle:
            temporary = handle.name
            write(handle)
        os.replace(temporary, path)
        temporary = None
    except Exception:
        return
    finally:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


def inputs_path(
    op: str, case_label: str, dtype: str, seed: int, key_source: Callable[..., object]
) -> Path | None:
    """Where the inputs of one (op, case, dtype, seed) are kept; None when the cache is off."""
    folder = settings.read("MTB_INPUT_CACHE")
    if folder is None:
        return None
    return Path(folder) / f"{op}-{cache_key(op, case_label, dtype, seed, key_source)}{SUFFIX}"


def cached(
    op: str,
    case_label: str,
    dtype: str,
    seed: int,
    maker: Callable[[np.random.Generator], Arrays],
    key_source: Callable[..., object],
    also: tuple[str, ...] = (),
) -> Arrays:
    """The op's rounded inputs: read from the cache folder, or made now and stored there.  On a miss the
    same draw is also rounded to the dtypes in ``also`` (the op's other dtypes) and stored for their
    processes: drawing is the costly part (64M normal values: 1.6 s here), and every dtype rounds the
    same draw."""
    path = inputs_path(op, case_label, dtype, seed, key_source)
    if path is None:
        return make(seed, maker, dtype)
    arrays = _read(path)
    if arrays is not None:
        return arrays
    drawn = maker(np.random.default_rng(seed))
    arrays = rounded(drawn, dtype)
    _store(path, arrays)
    for other in dict.fromkeys(also):
        other_path = inputs_path(op, case_label, other, seed, key_source)
        if other != dtype and not other_path.exists():
            _store(other_path, rounded(drawn, other))
    return arrays


def cached_reference(
    inputs: Path | None, reference: Callable[..., object], compute: Callable[[], np.ndarray]
) -> np.ndarray:
    """The float64 reference output for the inputs kept at ``inputs``, kept beside them: every backend
    and dtype variant of a case with the same rounded inputs compares against it, and for a large
    matrix product it costs seconds (an 8192 float64 product is 1.1 TFLOP on the host).  Keyed by the
    inputs' file and the reference's source."""
    if inputs is None:
        return compute()
    digest = hashlib.sha256(f"{inputs.name}\n{_source(reference)}".encode()).hexdigest()[:24]
    path = inputs.with_name(f"{inputs.stem}-reference-{digest}{SUFFIX}")
    stored = _read_mapped(path)
    if stored is not None:
        return stored
    out = compute()
    if isinstance(out, np.ndarray):
        _store_one(path, out)
    return out
