"""The epoch cache: later passes read no ROOT file, give the same rows, and stay valid."""

from __future__ import annotations

import dataclasses
import gc
import os
import shutil
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

import mlaas4hep_nb as mn
from mlaas4hep_nb.data import cache as cache_module
from mlaas4hep_nb.data import reader
from mlaas4hep_nb.data.cache import UnitCache, available_memory, cache_mode
from mlaas4hep_nb.data.stream import NonFiniteWarning

KW = {"chunk_size": 700, "seed": 4, "progress": False}


@pytest.fixture
def reads(monkeypatch):
    """Counts the units read from ROOT files (`UnitReader.__call__`), in a one-item list."""
    count = [0]
    read = reader.UnitReader.__call__

    def counting(self, unit):
        count[0] += 1
        return read(self, unit)

    monkeypatch.setattr(reader.UnitReader, "__call__", counting)
    return count


@pytest.fixture
def copied(tth, tmp_path) -> dict[int, list[str]]:
    """The ttH files copied into this test's folder (the test may change them)."""
    out = {}
    for label, paths in tth.items():
        out[label] = [str(shutil.copy(path, tmp_path / Path(path).name)) for path in paths]
    return out


@pytest.fixture(scope="module")
def half(tth) -> int:
    """Half the bytes the cache of the ttH files takes: a limit some units fit under."""
    stream = mn.DataStream(tth, cache="memory", **KW)
    list(stream.chunks())
    assert stream.report["cache"]["units"] >= 4
    return stream.report["cache"]["bytes"] // 2


def one_pass(stream):
    """Every array a pass of each kind yields: split_chunks, then train and validation chunks."""
    out = []
    for train, validation in stream.split_chunks():
        out.extend([*train, *validation])
    for split in ("train", "validation", None):
        for rows in stream.chunks(split):
            out.extend(rows)
    return out


def flat(chunks):
    return [array for rows in chunks for array in rows]


def assert_same(a, b):
    assert len(a) == len(b)
    for left, right in zip(a, b, strict=True):
        np.testing.assert_array_equal(left, right)


def mapped_cache_files(folder: str) -> set[str]:
    with open("/proc/self/maps") as maps:
        return {line.split()[-1] for line in maps if folder in line}


def test_later_passes_read_no_root_file_and_give_what_a_fresh_read_gives(tth, reads):
    plain = mn.DataStream(tth, cache=False, **KW)
    cached = mn.DataStream(tth, cache="memory", **KW)
    reads[0] = 0
    expected = [one_pass(plain) for _ in range(3)]
    units = sum(len(units) for units in cached._units)
    assert reads[0] == 3 * 4 * units  # without the cache: every unit, every pass
    reads[0] = 0
    first = one_pass(cached)
    assert reads[0] == units  # the first pass reads each unit once
    assert_same(first, expected[0])
    for expect in expected[1:]:
        assert_same(one_pass(cached), expect)  # reshuffled as without the cache
    assert reads[0] == units  # ... and no later pass reads a ROOT file
    info = cached.report["cache"]
    assert (info["mode"], info["units"], info["hits"], info["reads"]) == ("memory", units, units, 0)
    assert info["path"] is None
    assert info["bytes"] == info["memory_bytes"] > 0


@pytest.mark.parametrize("cache", ["memory", "disk", "auto", "folder"])
def test_every_mode_gives_the_rows_of_the_stream_without_cache(tth, tmp_path, half, cache):
    if cache == "folder":
        cache = tmp_path / "scratch"
    limit = {"cache_limit": half} if cache == "auto" else {}  # some units in memory, some not
    cached = mn.DataStream(tth, cache=cache, **limit, **KW)
    plain = mn.DataStream(tth, cache=False, **KW)
    for _ in range(3):
        assert_same(one_pass(cached), one_pass(plain))
        x, mask, y = cached.head(1500, "train")
        np.testing.assert_array_equal(x, plain.head(1500, "train")[0])
        assert [len(a) for a in (x, mask, y)] == [1500] * 3
    info = cached.report["cache"]
    assert info["reads"] == 0
    if cache == "auto":
        assert 0 < info["in_memory"] < info["units"]
        assert info["memory_bytes"] <= half < info["bytes"]
    if isinstance(cache, Path):
        assert Path(info["path"]).parent == cache


def test_cache_false_reads_every_pass_and_reports_no_cache(tth, reads):
    stream = mn.DataStream(tth, cache=False, **KW)
    units = sum(len(units) for units in stream._units)
    for _ in range(2):
        list(stream.chunks())
    assert reads[0] == 2 * units
    assert stream.report["cache"] == {"mode": None}
    assert stream._cache is None


def test_a_touched_or_resized_file_is_read_again(copied, reads):
    stream = mn.DataStream(copied, cache="auto", **KW)
    plain = mn.DataStream(copied, cache=False, **KW)
    units_of = {
        path: sum(unit.file == path for units in stream._units for unit in units)
        for path in stream.files
    }
    list(stream.chunks())
    list(plain.chunks())
    reads[0] = 0
    touched = copied[1][0]
    stat = os.stat(touched)
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # mtime only
    rows = flat(stream.chunks())
    assert reads[0] == units_of[touched]  # the touched file's units only
    assert "changed" in stream.report["cache"]["reason"]
    assert_same(rows, flat(plain.chunks()))
    reads[0] = 0
    list(stream.chunks())
    assert reads[0] == 0  # cached again under the file's new identity
    resized = copied[0][1]
    with open(resized, "ab") as file:
        file.write(b"\0" * 64)  # same mtime kept below: only the size differs
    os.utime(resized, ns=(stat.st_atime_ns, os.stat(resized).st_mtime_ns))
    list(stream.chunks())
    assert reads[0] == units_of[resized]


@pytest.mark.parametrize(
    "change",
    [
        {"normalize": None},
        {"validation_fraction": 0.5},
        {"seed": 99},
        {"cut": "MET_pt > 40"},
        {"names": ["MET_pt", "nJet", "Jet_pt", "event"]},
        "spec",
    ],
    ids=["normalize", "validation_fraction", "seed", "cut", "branches", "spec"],
)
def test_a_changed_setting_drops_the_cache(tth, reads, change):
    """A stream's settings are fixed, but the key is checked each pass: a change reads again."""
    stream = mn.DataStream(tth, branches=["MET_pt", "nJet", "Jet_pt"], cache="memory", **KW)
    units = sum(len(units) for units in stream._units)
    list(stream.chunks())
    reads[0] = 0
    if change == "spec":
        spec = stream.spec
        met = dataclasses.replace(spec.branches[0], max=spec.branches[0].max * 2)
        change = {"spec": dataclasses.replace(spec, branches=(met, *spec.branches[1:]))}
    stream._reader = dataclasses.replace(stream._reader, **change)
    x = np.concatenate([x for x, _, _ in stream.chunks()])
    assert reads[0] == units
    assert stream.report["cache"]["reason"].startswith("the stream's settings changed")
    if "normalize" in change:
        assert x.max() > 1.0  # read again, not the normalised rows of the cache
    list(stream.chunks())
    assert reads[0] == units  # and cached again


def test_disk_cache_folder_removed_on_close_and_on_garbage_collection(tth, tmp_path):
    stream = mn.DataStream(tth, cache="disk", **KW)
    plain = mn.DataStream(tth, cache=False, **KW)
    assert_same(one_pass(stream), one_pass(plain))
    folder = stream.report["cache"]["path"]
    assert Path(folder).is_dir()
    assert any(Path(folder).iterdir())
    assert stream.report["cache"]["memory_bytes"] == 0
    stream.close()
    assert not Path(folder).exists()
    assert stream.report["cache"]["units"] == 0
    assert_same(one_pass(stream), one_pass(plain))  # reads again, caches again
    second = stream.report["cache"]["path"]
    assert Path(second).is_dir()
    assert second != folder
    del stream
    gc.collect()
    assert not Path(second).exists()
    in_folder = mn.DataStream(tth, cache=tmp_path / "mine", **KW)
    list(in_folder.chunks())
    folder = in_folder.report["cache"]["path"]
    assert Path(folder).parent == tmp_path / "mine"
    del in_folder
    gc.collect()
    assert not Path(folder).exists()
    assert (tmp_path / "mine").is_dir()  # the given folder stays, empty
    assert not any((tmp_path / "mine").iterdir())


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_disk_cache_maps_only_the_units_in_use(tth):
    """Memory stays bounded: a unit's file is mapped while a chunk needs it, then unmapped."""
    stream = mn.DataStream(tth, cache="disk", chunk_size=300, seed=1, progress=False)
    list(stream.chunks())
    folder = stream.report["cache"]["path"]
    units = stream.report["cache"]["units"]
    assert units >= 8
    most = 0
    for _ in stream.chunks("train"):
        most = max(most, len(mapped_cache_files(folder)))
    assert 0 < most <= stream.prefetch + 4  # read-ahead plus the units of one chunk
    gc.collect()
    assert not mapped_cache_files(folder)


def test_auto_spills_to_disk_past_a_tiny_limit(tth, reads):
    stream = mn.DataStream(tth, cache="auto", cache_limit=1, **KW)
    list(stream.chunks())
    info = stream.report["cache"]
    assert info["in_memory"] == 0
    assert info["memory_bytes"] == 0
    assert info["on_disk"] == info["units"] > 0
    assert info["disk_bytes"] > 0
    assert Path(info["path"]).is_dir()
    reads[0] = 0
    list(stream.chunks())
    assert reads[0] == 0


def test_memory_mode_past_its_limit_reads_again_and_says_why(tth, reads, half):
    stream = mn.DataStream(tth, cache="memory", cache_limit=half, **KW)
    units = sum(len(units) for units in stream._units)
    list(stream.chunks())
    kept = stream.report["cache"]["units"]
    assert 0 < kept < units
    reads[0] = 0
    list(stream.chunks())
    info = stream.report["cache"]
    assert reads[0] == info["reads"] == units - kept
    assert info["hits"] == kept
    assert info["path"] is None
    assert "cache_limit" in info["reason"]


def test_disk_cache_leaves_the_reserve_free(tth, reads, monkeypatch):
    stream = mn.DataStream(tth, cache="disk", **KW)
    stream._cache.reserve = shutil.disk_usage(cache_module.tempfile.gettempdir()).total
    list(stream.chunks())
    assert stream.report["cache"]["units"] == 0
    assert "nearly full" in stream.report["cache"]["full"]


def test_nonfinite_counts_come_back_from_the_disk_cache(tmp_path):
    path = tmp_path / "nan.root"
    with uproot.recreate(path) as file:
        tree = file.mktree("Events", {"x": np.float64, "j": "var * float64"})
        tree.extend(
            {
                "x": np.array([1.0, np.nan, 3.0, 4.0]),
                "j": ak.Array([[1.0, np.inf], [2.0], [], [np.nan]]),
            }
        )
    with pytest.warns(NonFiniteWarning):
        stream = mn.DataStream(
            {0: [str(path)], 1: [str(path)]}, chunk_size=2, cache="disk", progress=False
        )
        first = list(stream.chunks())
    counts = dict(stream.report["nonfinite"])
    assert counts == {f"x ({path})": 2, f"j ({path})": 4}
    again = list(stream.chunks())
    assert stream.report["cache"]["reads"] == 0
    assert stream.report["nonfinite"] == counts
    assert sorted(np.concatenate([y for *_, y in first]).tolist()) == sorted(
        np.concatenate([y for *_, y in again]).tolist()
    )


def test_cache_arguments():
    assert cache_mode(False) == cache_mode(None) == (None, None)
    assert cache_mode("disk") == ("disk", None)
    assert cache_mode(Path("/scratch/me")) == ("disk", "/scratch/me")
    with pytest.raises(ValueError, match="cache must be one of"):
        cache_mode(3)
    with pytest.raises(ValueError, match="cache_limit"):
        UnitCache("auto", -1)
    assert 0 < available_memory() <= cache_module.psutil.virtual_memory().available
