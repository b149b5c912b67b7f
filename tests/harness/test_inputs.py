"""The ops' input cache: made once, read back equal, keyed by everything that decides the values."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.harness import inputs, parity, settings
from benchmarks.harness.opspec import identity_inputs, normal_inputs


def _counting_maker(calls: list[int]):
    def maker(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        calls.append(1)
        return (rng.standard_normal((64, 33)), rng.integers(0, 10, size=(5,)))

    return maker


def test_made_once_then_read_back_equal(tmp_path, monkeypatch):
    monkeypatch.setenv("MTB_INPUT_CACHE", str(tmp_path))
    calls: list[int] = []
    maker = _counting_maker(calls)
    first = inputs.cached("Op", "64x33", "bfloat16", 7, maker, maker)
    second = inputs.cached("Op", "64x33", "bfloat16", 7, maker, maker)
    assert len(calls) == 1, "the second process must read the stored inputs, not draw them again"
    assert len(list(tmp_path.glob("*.npy"))) == 1
    for a, b in zip(first, second, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    # stored narrow, and exactly the rounded draw the suite made before the cache existed
    drawn = _counting_maker([])(np.random.default_rng(7))
    assert first[0].dtype == np.float32
    assert np.array_equal(first[0].astype(np.float64), parity.quantize(drawn[0], "bfloat16"))
    assert first[1].dtype.kind == "i" and np.array_equal(first[1], drawn[1])


def test_key_covers_dtype_seed_case_and_the_makers_source():
    base = inputs.cache_key("Op", "64x33", "float32", 1, normal_inputs)
    assert inputs.cache_key("Op", "64x33", "bfloat16", 1, normal_inputs) != base
    assert inputs.cache_key("Op", "64x33", "float32", 2, normal_inputs) != base
    assert inputs.cache_key("Op", "64x34", "float32", 1, normal_inputs) != base
    assert inputs.cache_key("Other", "64x33", "float32", 1, normal_inputs) != base
    assert inputs.cache_key("Op", "64x33", "float32", 1, identity_inputs) != base
    assert inputs.cache_key("Op", "64x33", "float32", 1, normal_inputs) == base


def test_key_covers_the_file_layout(monkeypatch):
    base = inputs.cache_key("Op", "64x33", "float32", 1, normal_inputs)
    monkeypatch.setattr(inputs, "FILE_FORMAT", "another-layout")
    assert inputs.cache_key("Op", "64x33", "float32", 1, normal_inputs) != base


def test_damaged_file_is_made_again(tmp_path, monkeypatch):
    monkeypatch.setenv("MTB_INPUT_CACHE", str(tmp_path))
    calls: list[int] = []
    maker = _counting_maker(calls)
    inputs.cached("Op", "c", "float32", 3, maker, maker)
    (stored,) = tmp_path.glob("*.npy")
    stored.write_bytes(b"not arrays")
    again = inputs.cached("Op", "c", "float32", 3, maker, maker)
    assert len(calls) == 2 and again[0].shape == (64, 33)


def test_off_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("MTB_INPUT_CACHE", "off")
    monkeypatch.chdir(tmp_path)
    calls: list[int] = []
    maker = _counting_maker(calls)
    inputs.cached("Op", "c", "float32", 3, maker, maker)
    inputs.cached("Op", "c", "float32", 3, maker, maker)
    assert len(calls) == 2 and not list(tmp_path.rglob("*.npy"))


def test_a_file_named_as_the_folder_is_a_setting_error(tmp_path):
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(settings.SettingError, match=r"MTB_INPUT_CACHE=.*is a file"):
        settings.read("MTB_INPUT_CACHE", {"MTB_INPUT_CACHE": str(path)})


def test_the_float64_reference_is_computed_once_per_inputs_and_reference(tmp_path, monkeypatch):
    monkeypatch.setenv("MTB_INPUT_CACHE", str(tmp_path))
    maker = _counting_maker([])
    arrays = inputs.cached("Op", "64x33", "float32", 7, maker, maker)
    path = inputs.inputs_path("Op", "64x33", "float32", 7, maker)
    assert path is not None and path.exists()
    computed: list[int] = []

    def reference(a: np.ndarray) -> np.ndarray:
        computed.append(1)
        return np.tanh(a)

    first = inputs.cached_reference(path, reference, lambda: reference(arrays[0].astype(np.float64)))
    second = inputs.cached_reference(path, reference, lambda: reference(arrays[0].astype(np.float64)))
    assert len(computed) == 1 and first.dtype == np.float64 and np.array_equal(first, second)
    assert isinstance(second, np.memmap), "a stored reference is mapped from its file, not copied"

    def other_reference(a: np.ndarray) -> np.ndarray:
        return np.tanh(a) + 1.0

    # another reference (edited source) is another file: never the stale result
    as64 = arrays[0].astype(np.float64)
    third = inputs.cached_reference(path, other_reference, lambda: other_reference(as64))
    assert np.allclose(third, first + 1.0)
    # a scalar output (a mean loss) comes back as the scalar it was, not as a one-element vector
    scalar = inputs.cached_reference(path, np.mean, lambda: np.asarray(np.mean(as64)))
    again = inputs.cached_reference(path, np.mean, lambda: np.asarray(np.mean(as64)))
    assert isinstance(again, np.memmap) and np.shape(scalar) == np.shape(again) == ()
    # the cache off (no inputs file): computed every time
    inputs.cached_reference(None, reference, lambda: reference(arrays[0].astype(np.float64)))
    assert len(computed) == 2


def _aged(path, seconds_ago: float) -> None:
    import os
    import time

    stamp = time.time() - seconds_ago
    os.utime(path, (stamp, stamp))


def test_files_in_use_make_room_least_recently_used_first_within_the_size_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("MTB_INPUT_CACHE", str(tmp_path))
    maker = _counting_maker([])
    for name, age in (("oldest", 300), ("older", 200), ("used", 100)):
        inputs.cached("Op", name, "float32", 1, maker, maker)
        _aged(inputs.inputs_path("Op", name, "float32", 1, maker), age)
    used = inputs.inputs_path("Op", "used", "float32", 1, maker)
    oldest = inputs.inputs_path("Op", "oldest", "float32", 1, maker)
    inputs.cached("Op", "oldest", "float32", 1, maker, maker)  # a read renews it: now the newest
    one_file = used.stat().st_size
    # room for three files: storing a fourth removes the least recently used one ("older") only
    monkeypatch.setenv("MTB_INPUT_CACHE_GB", str(3.5 * one_file / 1e9))
    inputs.cached("Op", "new", "float32", 1, maker, maker)
    kept = {p.name for p in tmp_path.glob("*.npy")}
    assert inputs.inputs_path("Op", "older", "float32", 1, maker).name not in kept
    assert {used.name, oldest.name, inputs.inputs_path("Op", "new", "float32", 1, maker).name} <= kept
    assert len(kept) == 3


def test_runs_that_read_more_than_the_cache_holds_in_one_order_keep_part_of_it_between_runs(
    tmp_path, monkeypatch
):
    import os

    monkeypatch.setenv("MTB_INPUT_CACHE", str(tmp_path))
    calls: list[int] = []
    maker = _counting_maker(calls)
    ops = ["Abs", "Ceil", "Exp", "Floor", "Log"]  # one case each, read in this order by every run
    probe = inputs.inputs_path("Probe", "c", "float32", 1, maker)
    inputs.cached("Probe", "c", "float32", 1, maker, maker)
    monkeypatch.setenv("MTB_INPUT_CACHE_GB", str(3.5 * probe.stat().st_size / 1e9))  # three of five
    probe.unlink()

    def run() -> int:
        before = len(calls)
        for op in ops:
            inputs.cached(op, "c", "float32", 1, maker, maker)
            for path in tmp_path.glob("*.npy"):  # the next op comes later: no file is still being read
                stamp = path.stat().st_mtime - 2 * inputs.IN_USE_SECONDS
                os.utime(path, (stamp, stamp))
        return len(calls) - before

    assert run() == 5
    # removing the least recently used would remove each file just before it is asked for: 5 draws a
    # run; at best a run draws the 2 that do not fit
    assert all(run() <= 3 for _ in range(4))


def test_the_cache_removes_files_in_its_order(tmp_path, monkeypatch):
    import os
    import time

    monkeypatch.setenv("MTB_INPUT_CACHE", str(tmp_path))
    hour, day = 3600.0, 86400.0
    # in the order they must go: a killed writer's file, one no run read for days, other ops' files
    # the most recently used first, other ops' files read in the last minutes the oldest first, then
    # the measured op's own, the oldest first
    files = [
        ("tmp1x2y3z.partial", 2 * hour),
        ("Exp-abandoned.npy", 4 * day),
        ("Exp-a-reference-b.npy", 2 * hour),
        ("weights-Bert-c.pt", 3 * hour),
        ("Sum-d.npy", 120.0),
        ("SumAll-e.npy", 60.0),
        ("Softmax-f.npy", 5 * hour),
        ("Softmax-g-reference-h.npy", 30.0),
    ]
    size = 1000
    for removed in range(1, len(files) + 1):
        for name, age in files:
            path = tmp_path / name
            path.write_bytes(b"x" * size)
            stamp = time.time() - age
            os.utime(path, (stamp, stamp))
        # room for the incoming file once ``removed`` files are gone, not before
        monkeypatch.setenv("MTB_INPUT_CACHE_GB", str((len(files) - removed + 1.5) * size / 1e9))
        assert inputs.make_room(tmp_path, size, keep="Softmax")
        left = {path.name for path in tmp_path.iterdir()}
        assert left == {name for name, _ in files[removed:]}, removed


def test_a_cache_files_owner_is_the_op_its_name_starts_with():
    from benchmarks.ops import all_specs

    assert inputs.owner("Softmax-0123-reference-4567.npy") == "Softmax"
    assert inputs.owner("SumAll-89ab.npy") == "SumAll"
    assert inputs.owner("weights-BertModel-cdef.pt") == "weights"
    names = [spec.name for spec in all_specs()]
    assert names and not [name for name in names if "-" in name]  # a hyphen would split an op's name


def test_a_file_that_cannot_fit_is_not_kept_but_the_run_gets_its_inputs(tmp_path, monkeypatch):
    monkeypatch.setenv("MTB_INPUT_CACHE", str(tmp_path))
    monkeypatch.setenv("MTB_INPUT_CACHE_GB", "0.000001")  # 1000 bytes: less than one file
    calls: list[int] = []
    maker = _counting_maker(calls)
    made = inputs.cached("Op", "c", "float32", 1, maker, maker)
    assert made[0].shape == (64, 33) and not list(tmp_path.iterdir())


def test_the_disk_keeps_a_tenth_free(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    monkeypatch.setenv("MTB_INPUT_CACHE", str(tmp_path))
    maker = _counting_maker([])
    inputs.cached("Op", "first", "float32", 1, maker, maker)
    first = inputs.inputs_path("Op", "first", "float32", 1, maker)
    size = first.stat().st_size
    usage = namedtuple("usage", "total used free")
    # a disk of 100 files' size with 10.5 files' room: a second file would leave under a tenth free
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(100 * size, 89.5 * size, 10.5 * size))
    inputs.cached("Op", "second", "float32", 1, maker, maker)
    names = {p.name for p in tmp_path.glob("*.npy")}
    assert first.name not in names and inputs.inputs_path("Op", "second", "float32", 1, maker).name in names


def test_the_size_limit_is_a_checked_setting():
    assert settings.read("MTB_INPUT_CACHE_GB", {"MTB_INPUT_CACHE_GB": "2.5"}) == 2.5
    for bad in ("0", "-1", "lots", "inf"):
        with pytest.raises(settings.SettingError, match=r"MTB_INPUT_CACHE_GB=.*number of gigabytes above 0"):
            settings.read("MTB_INPUT_CACHE_GB", {"MTB_INPUT_CACHE_GB": bad})


def test_one_draw_makes_every_dtype_of_the_case(tmp_path, monkeypatch):
    monkeypatch.setenv("MTB_INPUT_CACHE", str(tmp_path))
    calls: list[int] = []
    maker = _counting_maker(calls)
    first = inputs.cached("Op", "c", "float16", 5, maker, maker, also=("float32", "float16", "bfloat16"))
    later = inputs.cached("Op", "c", "bfloat16", 5, maker, maker, also=("float32", "float16", "bfloat16"))
    plain = inputs.cached("Op", "c", "float32", 5, maker, maker)
    assert len(calls) == 1, "the other dtypes must be rounded from the first draw, not drawn again"
    assert len(list(tmp_path.glob("*.npy"))) == 3
    for dtype, got in (("float16", first), ("bfloat16", later), ("float32", plain)):
        fresh = inputs.make(5, _counting_maker([]), dtype)  # what a draw of its own gives
        assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(got, fresh, strict=True))


def test_a_store_that_cannot_fit_removes_nothing(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    monkeypatch.setenv("MTB_INPUT_CACHE", str(tmp_path))
    maker = _counting_maker([])
    for name in ("a", "b"):
        inputs.cached("Op", name, "float32", 1, maker, maker)
    size = inputs.inputs_path("Op", "a", "float32", 1, maker).stat().st_size
    # a file larger than the whole limit
    monkeypatch.setenv("MTB_INPUT_CACHE_GB", str(1.5 * size / 1e9))
    assert not inputs.make_room(tmp_path, 2 * size) and len(list(tmp_path.glob("*.npy"))) == 2
    monkeypatch.delenv("MTB_INPUT_CACHE_GB")
    # a disk whose other contents leave under a tenth free even with the cache emptied
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(100 * size, 95 * size, 5 * size))
    assert not inputs.make_room(tmp_path, size) and len(list(tmp_path.glob("*.npy"))) == 2


def test_only_the_caches_own_files_are_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("MTB_INPUT_CACHE", str(tmp_path))
    maker = _counting_maker([])
    inputs.cached("Op", "a", "float32", 1, maker, maker)
    size = inputs.inputs_path("Op", "a", "float32", 1, maker).stat().st_size
    mine = tmp_path / "notes.txt"
    mine.write_bytes(b"x" * size)
    stale, writing = tmp_path / "left-by-a-killed-process.partial", tmp_path / "being-written.partial"
    stale.write_bytes(b"x" * size)
    writing.write_bytes(b"x" * size)
    for path in (mine, stale):
        _aged(path, 2 * inputs.STALE_PARTIAL_SECONDS)
    monkeypatch.setenv("MTB_INPUT_CACHE_GB", str(2.5 * size / 1e9))
    assert inputs.make_room(tmp_path, size)
    assert mine.exists() and writing.exists() and not stale.exists()


def test_damaged_or_cut_short_files_are_made_again(tmp_path, monkeypatch):
    monkeypatch.setenv("MTB_INPUT_CACHE", str(tmp_path))
    calls: list[int] = []
    maker = _counting_maker(calls)
    made = inputs.cached("Op", "c", "float32", 1, maker, maker)
    path = inputs.inputs_path("Op", "c", "float32", 1, maker)
    whole = path.read_bytes()
    first_array_ends = whole.index(b"\x93NUMPY", whole.index(b"\x93NUMPY", 1) + 1)
    damaged = [
        whole[:-9],  # the last array's data cut short
        whole[:first_array_ends],  # cut exactly after the first input: one array short
        whole.replace(b"'shape': (1,)", b"'shape': (-1,)", 1),
        whole.replace(b"'descr'", b"'de(cr'", 1),
        whole.replace(b"'shape': (1,)", b"'shape': ((1,)", 1),  # NumPy raises tokenize's TokenError
        whole + b"trailing",
    ]
    for data in damaged:
        path.write_bytes(data)
        again = inputs.cached("Op", "c", "float32", 1, maker, maker)
        assert all(np.array_equal(a, b) for a, b in zip(made, again, strict=True))
    assert len(calls) == 1 + len(damaged)

    def reference(a: np.ndarray) -> np.ndarray:
        return a * 2.0

    first = inputs.cached_reference(path, reference, lambda: reference(made[0].astype(np.float64)))
    (stored,) = tmp_path.glob("*-reference-*")
    stored.write_bytes(stored.read_bytes()[:-8])  # a reference cut short is computed again
    second = inputs.cached_reference(path, reference, lambda: reference(made[0].astype(np.float64)))
    assert np.array_equal(first, second)


def test_a_failing_writer_leaves_no_file_and_the_run_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("MTB_INPUT_CACHE", str(tmp_path))

    def fail(handle) -> None:
        handle.write(b"half")
        raise ValueError("the writer broke")

    inputs.store_atomically(tmp_path / "weights-X.pt", fail, 4)
    assert not list(tmp_path.iterdir())
