"""Defects first seen on real CMS open-data files, each reproduced on a file written here."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
from conftest import HTTP_SERVER, start_xrootd
from support import free_port, stop, wait_for_port, world_readable_copy

import mlaas4hep_nb as mn
from mlaas4hep_nb.data.stream import NonFiniteWarning
from mlaas4hep_nb.errors import SchemaError, SkippedBranchWarning, SourceError


def write_tree(path: Path, branches: dict, tree: str = "Events", **options) -> str:
    """A TTree of ``branches`` (numpy arrays, 2-D for fixed-size arrays, or awkward);
    ``options`` go to ``mktree`` (``counter_name``)."""
    types = {
        name: values.type.content
        if isinstance(values, ak.Array)
        else np.dtype((values.dtype, values.shape[1:]))
        if values.ndim > 1
        else values.dtype
        for name, values in branches.items()
    }
    with uproot.recreate(path) as file:
        file.mktree(tree, types, **options).extend(branches)
    return str(path)


def write_rntuple(path: Path, fields: dict, tree: str = "Events") -> str:
    with uproot.recreate(path) as file:
        file[tree] = fields
    return str(path)


def stream_all(sources, **kw) -> tuple[mn.DataStream, np.ndarray, np.ndarray, np.ndarray]:
    """Every event, in file order, as one (X, mask, y)."""
    stream = mn.DataStream(sources, shuffle=False, progress=False, **kw)
    parts = list(stream.chunks())
    x, mask, y = (np.concatenate([p[i] for p in parts]) for i in range(3))
    return stream, x, mask, y


# --- 1. preview: the maximum lands in the last bin, never in the overflow -------------------


def many_maxima(values: np.ndarray) -> np.ndarray:
    """The values with their maximum hit by several entries (as counters and flags are)."""
    values = values.copy()
    values[:: max(1, len(values) // 5)] = values.max()
    return values


PREVIEWED = {
    "f32": many_maxima(np.random.default_rng(1).normal(37.3, 19.1, 3825).astype(np.float32)),
    "f64": many_maxima(np.random.default_rng(2).exponential(80.0, 3825)),
    "i32": many_maxima(np.random.default_rng(3).integers(0, 600_000_000, 3825, dtype=np.int32)),
    "u32": many_maxima(np.random.default_rng(4).integers(0, 4_000_000_000, 3825, dtype=np.uint32)),
    "small": np.random.default_rng(5).integers(0, 7, 3825).astype(np.int32),
    "flag": np.random.default_rng(6).random(3825) < 0.3,
    "negative": many_maxima(-np.random.default_rng(7).uniform(1e3, 1e4, 3825)),
}


@pytest.fixture(scope="module")
def previewed(tmp_path_factory) -> str:
    counts = np.tile([0, 1, 2], 1275)
    branches = {**PREVIEWED, "jagged": ak.unflatten(PREVIEWED["f32"], counts)}
    return write_tree(tmp_path_factory.mktemp("preview") / "preview.root", branches)


@pytest.mark.parametrize("branch", [*PREVIEWED, "jagged"])
def test_preview_puts_every_value_in_range(previewed, branch):
    values = PREVIEWED.get(branch, PREVIEWED["f32"])
    for bins in (7, 50, 100):
        histogram = mn.preview(previewed, "Events", branch, bins=bins)
        assert histogram.sum() == values.size
        assert histogram.sum(flow=True) == values.size
        assert histogram.axes[0].edges[0] == float(values.min())


# --- 2. minmax stays within [0, 1] for float64 and large integers ---------------------------


def with_range(values: np.ndarray, low, high) -> np.ndarray:
    """The values with ``low`` and ``high`` planted as their minimum and maximum."""
    values = values.copy()
    values[:2] = low, high
    return values


def test_minmax_stays_within_0_and_1_and_the_maximum_is_1(tmp_path):
    rng = np.random.default_rng(11)
    n = 5000
    # ranges where the float64 width rounded to float32 gave 1.0000001 for the maximum
    f64 = with_range(rng.uniform(-1.2, 2.2, n), -1.2459109472530652, 2.2677326452965483)
    bitmap = rng.integers(537_952_334, 627_421_679, n, dtype=np.int32)
    branches = {
        "f64": f64,
        "bitmap": with_range(bitmap, 537_952_334, 627_421_679),
        "f64_wide": rng.uniform(-1e6, 3e7, n),
        "u32": rng.integers(0, 4_200_000_000, n, dtype=np.uint32),
        "i64": rng.integers(-(2**40), 2**45, n, dtype=np.int64),
        "f32": rng.normal(50.0, 20.0, n).astype(np.float32),
    }
    path = write_tree(tmp_path / "ranges.root", branches)
    _, x, mask, _ = stream_all({0: [path]}, chunk_size=777)
    assert mask.all()
    assert x.min() >= 0.0
    assert x.max() <= 1.0
    np.testing.assert_array_equal(x.max(axis=0), np.ones(len(branches), np.float32))
    np.testing.assert_array_equal(x.min(axis=0), np.zeros(len(branches), np.float32))


# --- 3. RNTupleImporter's _collectionN twins are hidden ---------------------------------------


JETS = ak.values_astype(
    ak.Array(
        [
            [{"Jet_pt": 31.5, "Jet_eta": 0.25}],
            [],
            [{"Jet_pt": 22.0, "Jet_eta": -1.5}, {"Jet_pt": 11.0, "Jet_eta": 2.0}],
            [{"Jet_pt": 45.0, "Jet_eta": 0.5}, {"Jet_pt": 9.5, "Jet_eta": -0.75}],
        ]
    ),
    np.float32,
)
MET = np.array([10.5, 20.0, 7.25, 3.0], np.float32)


@pytest.fixture(scope="module")
def importer_pair(tmp_path_factory) -> tuple[str, str]:
    """A TTree (NanoAOD-like: nJet, Jet_pt, Jet_eta, MET_pt), and an RNTuple shaped as
    ROOT's RNTupleImporter writes the same data (``nJet`` an int64 cardinality there)."""
    folder = tmp_path_factory.mktemp("importer")
    n_jet = ak.num(JETS).to_numpy()
    jets = ak.zip({"pt": JETS.Jet_pt, "eta": JETS.Jet_eta})
    ttree = write_tree(folder / "ttree.root", {"Jet": jets, "MET_pt": MET})
    rntuple = write_rntuple(
        folder / "imported.root",
        {
            "_collection0": JETS,
            "Jet_pt": JETS.Jet_pt,
            "Jet_eta": JETS.Jet_eta,
            "nJet": n_jet.astype(np.int64),
            "MET_pt": MET,
        },
    )
    return ttree, rntuple


def test_importer_twins_are_hidden_from_branches(importer_pair):
    ttree, rntuple = importer_pair
    written = uproot.open(rntuple)["Events"].keys()
    assert "_collection0.Jet_pt" in written
    names = sorted(b.name for b in mn.branches(rntuple))
    assert names == sorted(b.name for b in mn.branches(ttree))
    assert not [name for name in names if name.startswith("_collection")]


def test_importer_twins_are_hidden_from_selections(importer_pair):
    ttree, rntuple = importer_pair
    options = {"cache": False, "progress": False}
    ttree_spec = mn.compute_specs(ttree, **options)
    rntuple_spec = mn.compute_specs(rntuple, **options)
    assert sorted(rntuple_spec.features) == sorted(ttree_spec.features)
    assert rntuple_spec.n_features == ttree_spec.n_features == 1 + 2 + 2 + 1
    wildcard = mn.compute_specs(rntuple, branches=["*Jet_pt*"], **options)
    assert [b.name for b in wildcard.branches] == ["Jet_pt"]
    with pytest.raises(SchemaError, match=r"'_collection0.Jet_pt' missing"):
        mn.compute_specs(rntuple, branches=["_collection0.Jet_pt"], **options)


# --- 4. integer widths mix across files; flat vs jagged does not -----------------------------


def test_a_ttree_and_an_rntuple_with_other_integer_types_stream_together(importer_pair, tmp_path):
    _, rntuple = importer_pair
    n_jet = ak.num(JETS).to_numpy()
    ttree = write_tree(
        tmp_path / "nanoaod.root",
        {"nJet": n_jet.astype(np.uint32), "Jet": ak.zip({"pt": JETS.Jet_pt}), "MET_pt": MET},
        counter_name=lambda name: f"{name}_size",  # nJet is NanoAOD's uint32_t, not uproot's
    )
    assert mn.branches(ttree)[0].dtype == "uint32"
    branches = ["nJet", "Jet_pt", "MET_pt"]
    stream, x, mask, y = stream_all({1: [ttree], 0: [rntuple]}, branches=branches, normalize=None)
    assert stream.spec.branch("nJet").max == 2
    n_jet = n_jet.astype(np.float32)
    for label in (0, 1):
        rows = x[y == label]
        np.testing.assert_array_equal(rows[:, stream.features.index("nJet")], n_jet)
        np.testing.assert_array_equal(rows[:, stream.features.index("MET_pt")], MET)
        padded = ak.fill_none(ak.pad_none(JETS.Jet_pt, 2, clip=True), 0).to_numpy()
        jets = [stream.features.index("Jet_pt_0"), stream.features.index("Jet_pt_1")]
        np.testing.assert_array_equal(rows[:, jets], padded)
        assert mask[y == label].sum() == 4 + int(n_jet.sum()) + 4


def test_bool_and_integers_mix_but_flat_jagged_and_float_int_do_not(tmp_path):
    ints = write_tree(tmp_path / "ints.root", {"n": np.array([0, 1, 2], np.int16)})
    flags = write_tree(tmp_path / "flags.root", {"n": np.array([True, False, True])})
    spec = mn.compute_specs([ints, flags], branches=["n"], cache=False, progress=False)
    assert (spec.branch("n").min, spec.branch("n").max, spec.branch("n").count) == (0, 2, 6)
    jagged = write_tree(tmp_path / "jagged.root", {"n": ak.Array([[1], [], [2, 3]])})
    with pytest.raises(SchemaError, match=r"'n' is jagged .*jagged.root but flat .*ints.root"):
        mn.compute_specs([ints, jagged], branches=["n"], cache=False, progress=False)
    floats = write_tree(tmp_path / "floats.root", {"n": np.array([0.5, 1.0, 2.0])})
    with pytest.raises(SchemaError, match=r"'n' has type double in .*floats.root but int16_t"):
        mn.compute_specs([ints, floats], branches=["n"], cache=False, progress=False)


# --- 5. a glob skips the unsupported branches it matches, and says so once --------------------


@pytest.fixture(scope="module")
def muons(tmp_path_factory) -> list[str]:
    """Two RNTuples with numeric, string and nested-list muon fields."""
    folder = tmp_path_factory.mktemp("muons")
    fields = {
        "muon_pt": ak.Array([[30.0, 12.5], [], [7.0]]),
        "muon_name": ak.Array(["mu", "", "mu"]),
        "muon_hits": ak.Array([[[1.0, 2.0], []], [], [[3.0]]]),
        "met": np.array([1.0, 2.0, 3.0]),
    }
    return [write_rntuple(folder / f"muons_{i}.root", fields) for i in range(2)]


def test_a_glob_skips_unsupported_branches_with_one_warning(muons):
    with pytest.warns(SkippedBranchWarning, match=r"left out 2 branch\(es\) matched by") as caught:
        spec = mn.compute_specs(muons, branches=["muon_*", "met"], cache=False, progress=False)
    assert len(caught) == 1
    assert caught[0].filename == __file__
    assert "muon_name (strings cannot be numeric features)" in str(caught[0].message)
    assert "muon_hits (nested vectors" in str(caught[0].message)
    assert [b.name for b in spec.branches] == ["muon_pt", "met"]
    assert set(spec.skipped) == {"muon_name", "muon_hits"}
    assert "strings" in spec.skipped["muon_name"]
    assert "nested" in spec.skipped["muon_hits"]
    assert "skipped muon_name" in spec.summary()


def test_a_stream_over_a_glob_warns_once_not_per_file_or_chunk(muons):
    with pytest.warns(SkippedBranchWarning) as caught:
        stream = mn.DataStream(
            {0: muons[:1], 1: muons[1:]}, branches=["muon*"], chunk_size=1, progress=False
        )
        assert sum(len(y) for _, _, y in stream.chunks()) == 6
    assert len(caught) == 1
    assert caught[0].filename == __file__
    assert stream.features == ["muon_pt_0", "muon_pt_1"]


def test_unsupported_branches_named_exactly_or_matched_alone_are_errors(muons):
    with pytest.raises(SchemaError, match=r"'muon_name' in .*muons_0.root is unsupported: strings"):
        mn.compute_specs(muons, branches=["muon_name"], cache=False, progress=False)
    with pytest.raises(SchemaError, match=r"'\*_hits' matches only branches .* cannot be features"):
        mn.compute_specs(muons, branches=["*_hits"], cache=False, progress=False)


# --- 6. max_len must be a whole number >= 1 ---------------------------------------------------


@pytest.mark.parametrize("max_len", [-1, 0, 2.5, True, "3", {"Jet_pt": -1}, {"Jet_pt": 0}])
def test_bad_max_len_is_a_clear_error(importer_pair, max_len):
    ttree, _ = importer_pair
    with pytest.raises(ValueError, match=r"max_len.* must be a whole number >= 1"):
        mn.compute_specs(ttree, max_len=max_len, cache=False, progress=False)
    with pytest.raises(ValueError, match=r"max_len.* must be a whole number >= 1"):
        mn.DataStream({0: [ttree]}, max_len=max_len, progress=False)


def test_max_len_accepts_numpy_integers_and_none_per_branch(importer_pair):
    ttree, _ = importer_pair
    spec = mn.compute_specs(
        ttree, max_len={"Jet_pt": np.int64(1), "Jet_eta": None}, cache=False, progress=False
    )
    assert (spec.branch("Jet_pt").pad, spec.branch("Jet_eta").pad) == (1, 2)


# --- 7. NaN/inf reported per pass, in the rows of the split read ------------------------------


@pytest.fixture(scope="module")
def nan_files(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("nan")
    paths = []
    for i in range(2):
        x = np.random.default_rng(i).normal(size=1000)
        x[np.random.default_rng(10 + i).choice(1000, 200, replace=False)] = np.nan
        paths.append(write_tree(folder / f"nan_{i}.root", {"x": x, "y": np.arange(1000.0)}))
    return paths


def nan_rows(chunks, column: int) -> int:
    return sum(int((~mask[:, column]).sum()) for _, mask, _ in chunks)


def test_nonfinite_report_covers_the_latest_pass_and_its_split(nan_files):
    stream = mn.DataStream(
        {0: nan_files[:1], 1: nan_files[1:]}, branches=["x", "y"], chunk_size=300, progress=False
    )
    keys = [f"x ({path})" for path in nan_files]
    with pytest.warns(NonFiniteWarning) as caught:
        for _ in range(3):
            assert nan_rows(stream.chunks(), 0) == 400
            assert stream.report["nonfinite"] == dict.fromkeys(keys, 200)
        train = nan_rows(stream.chunks("train"), 0)
        assert sum(stream.report["nonfinite"].values()) == train
        validation = nan_rows(stream.chunks("validation"), 0)
        assert sum(stream.report["nonfinite"].values()) == validation
        assert train + validation == 400
        assert 0 < validation < train
        assert sum(len(t[2]) + len(v[2]) for t, v in stream.split_chunks()) == 2000
        assert stream.report["nonfinite"] == dict.fromkeys(keys, 200)
    assert len(caught) == 1
    assert caught[0].filename == __file__


def test_nonfinite_warning_points_at_the_users_line_through_batches(nan_files):
    stream = mn.DataStream({0: nan_files}, branches=["x"], chunk_size=500, progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = sum(1 for _ in stream.batches("train", 64))
    assert batches > 1
    assert [(w.category, w.filename) for w in caught] == [(NonFiniteWarning, __file__)]


# --- 9. fixed-size arrays are fixed, not jagged -----------------------------------------------


FIXED_A = np.arange(60, dtype=np.int32).reshape(6, 10) - 7
FIXED_B = np.random.default_rng(9).normal(size=(6, 3)).astype(np.float32)


@pytest.fixture(scope="module", params=["TTree", "RNTuple"])
def fixed_file(request, tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("fixed")
    branches = {"a": FIXED_A, "b": FIXED_B, "x": np.arange(6.0)}
    if request.param == "TTree":
        return write_tree(folder / "fixed.root", branches)
    return write_rntuple(folder / "fixed.root", branches)


def test_fixed_size_arrays_are_labelled_fixed(fixed_file):
    infos = {b.name: b for b in mn.branches(fixed_file)}
    assert (infos["a"].jagged, infos["a"].fixed, infos["a"].shape) == (False, 10, "fixed[10]")
    assert (infos["b"].fixed, infos["b"].shape) == (3, "fixed[3]")
    assert (infos["x"].fixed, infos["x"].shape) == (None, "flat")
    assert infos["a"].supported


def test_fixed_size_arrays_give_all_their_values_as_real_features(fixed_file):
    stream, x, mask, _ = stream_all({0: [fixed_file]}, normalize=None)
    names = [f"a_{i}" for i in range(10)] + ["b_0", "b_1", "b_2", "x"]
    assert stream.features == names
    assert stream.spec.branch("a").shape == "fixed[10]"
    assert not stream.spec.branch("a").jagged
    assert mask.all()
    np.testing.assert_array_equal(x[:, :10], FIXED_A.astype(np.float32))
    np.testing.assert_array_equal(x[:, 10:13], FIXED_B)
    again = mn.FeatureSpec.from_dict(stream.spec.to_dict())
    assert again == stream.spec
    capped = mn.compute_specs(fixed_file, max_len=2, cache=False, progress=False)
    assert capped.features == ["a_0", "a_1", "b_0", "b_1", "x"]
    assert capped.branch("a").max == float(FIXED_A[:, :2].max())


def test_fixed_and_jagged_arrays_of_one_name_do_not_mix(fixed_file, tmp_path):
    jagged = write_tree(tmp_path / "jagged.root", {"b": ak.Array([[1.0, 2.0, 3.0]] * 6)})
    with pytest.raises(SchemaError, match=r"'b' is jagged .* but a fixed-size array of 3"):
        mn.compute_specs([fixed_file, jagged], branches=["b"], cache=False, progress=False)


@pytest.mark.slow
def test_raw_events_with_fixed_size_arrays_are_served_as_in_training(fixed_file, tmp_path):
    stream = mn.DataStream({0: fixed_file, 1: fixed_file}, max_len=2, progress=False)
    trainer = mn.Trainer(stream, epochs=1)
    trainer.fit(live_plot=False, progress=False)
    events = [
        {"a": a.tolist(), "b": b.tolist(), "x": float(x)}
        for a, b, x in zip(FIXED_A, FIXED_B, range(6), strict=True)
    ]
    x, mask, _ = next(iter(mn.DataStream({0: fixed_file, 1: fixed_file}, specs=stream.spec,
                                          shuffle=False, progress=False).chunks()))  # fmt: skip
    with mn.tfaas.serve_in_background(tmp_path / "models") as server:
        client = mn.TFaaSClient(server.url)
        client.upload(trainer, name="fixed")
        served = client.predict_raw("fixed", events)
        np.testing.assert_allclose(served, trainer.predict(x[:6], mask[:6]), atol=1e-5)
        with pytest.raises(mn.tfaas.TFaaSError, match=r"'a' must be a list of 10 numbers"):
            client.predict_raw("fixed", [{**events[0], "a": [1.0, 2.0]}])
    stream.close()


# --- 10. truncated files: one line that says so ---------------------------------------------


@pytest.fixture(scope="module")
def directory_at_the_end(tmp_path_factory) -> bytes:
    """A file whose directory lies near its end, as ROOT writes them (uproot moves it there
    once it outgrows its first place): cut in half, uproot cannot open it."""
    folder = tmp_path_factory.mktemp("whole")
    path = folder / "whole.root"
    with uproot.recreate(path) as file:
        file.mktree("Events", {"x": np.float32, "j": "var * float32"}).extend(
            {"x": np.arange(5000, dtype=np.float32), "j": ak.Array([[1.0, 2.0]] * 5000)}
        )
        for i in range(200):
            file[f"h{i}"] = np.histogram(np.arange(10.0), bins=5)
    whole = path.read_bytes()
    (folder / "half.root").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(OSError, match="expected Chunk"):
        uproot.open(folder / "half.root")
    return whole


TRUNCATED_CALLS = {
    "list_trees": lambda path: mn.list_trees(path),
    "branches": lambda path: mn.branches(path),
    "preview": lambda path: mn.preview(path, "Events", "x"),
    "compute_specs": lambda path: mn.compute_specs(path, cache=False, progress=False),
    "DataStream": lambda path: mn.DataStream({0: [path]}, progress=False),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fraction", [0.5, 0.9])
@pytest.mark.parametrize("call", list(TRUNCATED_CALLS))
def test_a_truncated_file_is_named_in_one_line(directory_at_the_end, tmp_path, fraction, call):
    path = tmp_path / f"cut_{int(fraction * 100)}.root"
    path.write_bytes(directory_at_the_end[: int(len(directory_at_the_end) * fraction)])
    with pytest.raises(SourceError) as caught:
        TRUNCATED_CALLS[call](str(path))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path} is truncated: its header says")


@pytest.fixture(scope="module", params=["xrootd", "http"])
def remote_truncated(request, directory_at_the_end, tmp_path_factory) -> str:
    """The URL of the file cut in half, served by a real XRootD or HTTP server."""
    cut = tmp_path_factory.mktemp("cut") / "cut_50.root"
    cut.write_bytes(directory_at_the_end[: len(directory_at_the_end) // 2])
    folder = world_readable_copy([cut], "mlaas4hep-truncated-")
    if request.param == "xrootd":
        process, base = start_xrootd(folder)
    else:
        port = free_port()
        process = subprocess.Popen([sys.executable, "-c", HTTP_SERVER, str(folder), str(port)])
        wait_for_port(port, process, "HTTP server")
        base = f"http://127.0.0.1:{port}"
    try:
        yield f"{base}/cut_50.root"
    finally:
        stop(process)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.timeout(120)
def test_a_truncated_remote_file_is_named_in_one_line(remote_truncated):
    for call in ("list_trees", "compute_specs"):
        with pytest.raises(SourceError) as caught:
            TRUNCATED_CALLS[call](remote_truncated)
        message = str(caught.value)
        assert "\n" not in message
        assert message.startswith(f"{remote_truncated} is truncated: its header says")
