"""Memory follows chunk_size: units, bytes read ahead, blocks freed, compute_specs's reads."""

from __future__ import annotations

import dataclasses
import weakref
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

import mlaas4hep_nb as mn
from mlaas4hep_nb.data import cache as cache_module
from mlaas4hep_nb.data import measure, reader
from mlaas4hep_nb.data import stream as stream_module
from mlaas4hep_nb.data.cache import UnitCache
from mlaas4hep_nb.data.convert import Converter
from mlaas4hep_nb.data.memory import mapped_zeros
from mlaas4hep_nb.data.plan import Unit, file_units
from mlaas4hep_nb.data.reader import Part

EVENTS = 4000
KW = {"cache": False, "progress": False, "seed": 2}


def write(path: Path, cluster: int) -> str:
    """EVENTS events of 3 flat and 2 jagged branches; each ``extend`` writes one cluster."""
    rng = np.random.default_rng(1)
    with uproot.recreate(path) as file:
        tree = None
        for start in range(0, EVENTS, cluster):
            n = min(cluster, EVENTS - start)
            counts = rng.integers(0, 5, n)
            data = {
                "event": np.arange(start, start + n, dtype=np.int64),
                "a": rng.normal(size=n).astype(np.float32),
                "b": rng.normal(size=n).astype(np.float32),
                "Jet_pt": ak.unflatten(rng.normal(size=counts.sum()).astype(np.float32), counts),
                "Jet_eta": ak.unflatten(rng.normal(size=counts.sum()).astype(np.float32), counts),
            }
            if tree is None:
                tree = file.mktree("Events", {k: ak.Array(v).type.content for k, v in data.items()})
            tree.extend(data)
    return str(path)


@pytest.fixture(scope="module")
def one_cluster(tmp_path_factory) -> str:
    return write(tmp_path_factory.mktemp("mem") / "one_cluster.root", EVENTS)


@pytest.fixture(scope="module")
def small_clusters(tmp_path_factory) -> str:
    return write(tmp_path_factory.mktemp("mem") / "small_clusters.root", 500)


def all_rows(stream) -> tuple[np.ndarray, ...]:
    parts = list(stream.chunks())
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))


def test_units_follow_clusters_that_fit_and_cut_a_huge_one_in_parts():
    units = file_units(0, "f", 100_000, [0, 100_000], 10_000)  # ten times the target
    assert [u.start for u in units] == [0, 33_333, 66_666]  # parts of at most 4 x target
    assert file_units(0, "f", 40_000, [0, 40_000], 10_000) == [Unit(0, "f", 0, 40_000)]
    small = file_units(0, "f", 10_000, list(range(0, 10_001, 1500)), 4000)
    assert all(u.size <= 4000 and u.start % 1500 == 0 for u in small)  # whole clusters joined
    assert sum(u.size for u in small) == 10_000
    whole = file_units(0, "f", 100_000, [0, 100_000], 10_000, cut=False)
    assert [u.size for u in whole] == [100_000]
    assert file_units(0, "f", 0, [0], 10) == []


def test_a_huge_cluster_is_read_in_parts_of_chunk_size_with_the_same_rows(one_cluster):
    stream = mn.DataStream({0: one_cluster}, chunk_size=700, shuffle=False, **KW)
    assert max(u.size for units in stream._units for u in units) <= 4 * 700
    assert len(stream._units[0]) > 1
    whole = mn.DataStream({0: one_cluster}, chunk_size=EVENTS, shuffle=False, **KW)
    assert len(whole._units[0]) == 1
    for mine, theirs in zip(all_rows(stream), all_rows(whole), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_read_ahead_stays_within_its_bytes(small_clusters):
    """Units of 1,000 events (two clusters) make one chunk each: the stream's own count."""
    plain = mn.DataStream({0: small_clusters}, chunk_size=1000, **KW)
    unit_bytes = 1000 * (5 * plain.n_features + 13)  # X and mask, y, split flag, entry
    expected = all_rows(plain)
    for budget, count, most in [(0, 8, 1), (2, 8, 2), (3, 8, 3), (10, 2, 2)]:
        stream = mn.DataStream(
            {0: small_clusters},
            chunk_size=1000,
            prefetch=count,
            prefetch_bytes=budget * unit_bytes,
            **KW,
        )
        for mine, theirs in zip(all_rows(stream), expected, strict=True):
            np.testing.assert_array_equal(mine, theirs)
        # a chunk's own unit goes ahead whatever the budget; then the budget or the count
        assert stream.report["read_ahead"] == {
            "limit_bytes": budget * unit_bytes,
            "peak_bytes": most * unit_bytes,
        }


def test_by_default_the_next_unit_is_read_beside_the_chunks_of_a_large_one(
    small_clusters, monkeypatch
):
    """Units of one 500-event cluster span chunks of 200: the next is read while they are made."""
    monkeypatch.setattr(stream_module, "_PREFETCH_FLOOR", 0)
    stream = mn.DataStream({0: small_clusters}, chunk_size=200, max_workers=2, **KW)
    unit_bytes = 500 * (5 * stream.n_features + 13)  # X and mask, y, split flag, entry
    # a chunk's worth per reader would hold one unit at a time (2 x 200 events < 500)
    assert stream.prefetch_bytes == 2 * unit_bytes
    all_rows(stream)
    assert stream.report["read_ahead"]["peak_bytes"] == 2 * unit_bytes


def test_blocks_are_freed_as_chunks_take_them(small_clusters, monkeypatch):
    blocks: list[weakref.ref] = []
    read = reader.UnitReader.__call__

    def keeping(self, unit):
        parts = read(self, unit)
        blocks.extend(weakref.ref(part) for part in parts)
        return parts

    monkeypatch.setattr(reader.UnitReader, "__call__", keeping)
    stream = mn.DataStream({0: small_clusters}, chunk_size=1000, max_workers=0, prefetch=2, **KW)
    for k, _ in enumerate(stream.chunks()):  # one unit of 8 blocks a chunk, one read ahead
        units = min(k + 2, 4)
        assert len(blocks) == 8 * units
        live = [ref for ref in blocks if ref() is not None]
        assert len(live) == 8 * (units - k - 1)  # the unit read ahead, nothing of chunk k


def test_a_reader_holds_a_few_columns_at_a_time_with_the_same_rows(small_clusters, monkeypatch):
    stream = mn.DataStream({0: small_clusters}, chunk_size=1000, shuffle=False, **KW)
    expected = all_rows(stream)
    asked: list[int] = []
    read_passing = reader.read_passing

    def counting(path, tree, names, *args, **kwargs):
        asked.append(len(names))
        return read_passing(path, tree, names, *args, **kwargs)

    monkeypatch.setattr(reader, "read_passing", counting)
    stream._reader = dataclasses.replace(stream._reader, names_per_read=2)
    for mine, theirs in zip(all_rows(stream), expected, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert max(asked) == 2
    assert sum(asked) == 4 * len(stream.spec.branches)  # each column of each unit once


def test_compute_specs_reads_follow_chunk_size(one_cluster, small_clusters, monkeypatch):
    reads: list[tuple[int, int]] = []
    read_passing = measure.read_passing

    def counting(path, tree, names, start, stop, **kwargs):
        if names:
            reads.append((stop - start, len(names)))
        return read_passing(path, tree, names, start, stop, **kwargs)

    monkeypatch.setattr(measure, "read_passing", counting)
    spec = mn.compute_specs(small_clusters, chunk_size=1000, cache=False, progress=False)
    assert set(reads) == {(1000, len(spec.branches))}  # two clusters a read
    reads.clear()
    mn.DataStream({0: small_clusters}, branches=["a", "Jet_pt"], chunk_size=500, **KW)
    assert set(reads) == {(500, 2)}  # the stream's chunk_size
    reads.clear()
    monkeypatch.setattr(measure, "NAMES_PER_READ", 2)
    huge = mn.compute_specs(one_cluster, chunk_size=1000, cache=False, progress=False)
    # the one cluster is read whole (decompressed once), so a column at a time
    assert reads == [(EVENTS, 1)] * len(huge.branches)
    other = mn.compute_specs(small_clusters, chunk_size=3000, cache=False, progress=False)
    for mine, theirs in zip(spec.branches, other.branches, strict=True):
        exact = {"mean": 0.0, "std": 0.0}  # the order of the sums changes their last bits
        assert dataclasses.replace(mine, **exact) == dataclasses.replace(theirs, **exact)
        assert mine.mean == pytest.approx(theirs.mean)
        assert mine.std == pytest.approx(theirs.std)


def test_converting_into_blocks_gives_the_rows_of_one_conversion(small_clusters):
    spec = mn.compute_specs(small_clusters, cache=False, progress=False)
    arrays = uproot.open(small_clusters)["Events"].arrays([b.name for b in spec.branches])
    columns = {b.name: arrays[b.name] for b in spec.branches}
    columns["a"] = ak.where(np.arange(EVENTS) % 7 == 0, np.nan, columns["a"])
    converter = Converter(spec)
    x, mask, nonfinite = converter(columns)
    blocks = converter.blocks([0, 1, 999, 1000, 2500, EVENTS])
    for first in range(0, len(columns), 2):  # two columns at a time, as a reader does
        converter.fill(blocks, dict(list(columns.items())[first : first + 2]))
    np.testing.assert_array_equal(np.concatenate([b.x for b in blocks]), x)
    np.testing.assert_array_equal(np.concatenate([b.mask for b in blocks]), mask)
    assert set(nonfinite) == {"a"}
    counts = np.concatenate([b.nonfinite["a"] for b in blocks])
    np.testing.assert_array_equal(counts, nonfinite["a"])


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc/self/maps")
def test_local_files_are_read_not_mapped(small_clusters, one_cluster):
    # a mapped file's pages that a pass read stay in RSS while the file is open: RSS
    # would follow the files and their sizes, not chunk_size
    stream = mn.DataStream({0: small_clusters, 1: one_cluster}, chunk_size=1000, **KW)
    try:
        rows = sum(len(y) for _, _, y in stream.chunks())
        assert rows == 2 * EVENTS
        assert stream._open_files._idle, "the files should still be open"
        maps = Path("/proc/self/maps").read_text()
        assert small_clusters not in maps
        assert one_cluster not in maps
    finally:
        stream.close()


def test_mapped_zeros_are_zeros():
    for shape in [(3, 4), (1000, 1000), (0, 5)]:
        array = mapped_zeros(shape, np.float32)
        assert (array.shape, array.dtype) == (shape, np.float32)
        assert array.flags.writeable
        assert not array.any()
        array[...] = 1.0
        assert array.sum() == array.size


def test_the_default_memory_limit_of_the_cache_follows_the_memory_available(monkeypatch):
    """Another user of memory leaves the cache less: later units spill to disk."""
    share = cache_module._MEMORY_SHARE
    size = 100 * (5 * 10 + 13)  # a unit of 100 rows of 10 features
    available = [share * 10_000]
    monkeypatch.setattr(cache_module, "available_memory", lambda: available[0])
    cache = UnitCache("auto")
    cache.begin("key", {"f": 1})
    part = Part(
        np.zeros((100, 10), np.float32),
        np.zeros((100, 10), bool),
        np.zeros(100, np.float32),
        np.zeros(100, bool),
        np.arange(100),
    )
    for i in range(3):
        cache.put(Unit(0, "f", 100 * i, 100 * (i + 1)), [part])
        available[0] -= size  # the cache's own memory
    assert cache.describe()["in_memory"] == 1  # 10,000 bytes hold one unit, not two
    available[0] = share * 2 * size
    cache.put(Unit(0, "f", 300, 400), [part])
    assert cache.describe()["in_memory"] == 2
    available[0] = 0  # someone else took it all
    cache.put(Unit(0, "f", 400, 500), [part])
    info = cache.describe()
    assert (info["in_memory"], info["on_disk"]) == (2, 3)
    assert info["limit"] == 2 * size // share
    cache.clear()
