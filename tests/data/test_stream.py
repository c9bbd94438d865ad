"""DataStream: every event once, padding and normalisation, splits, shuffling, labels, adapters."""

from __future__ import annotations

import subprocess
import sys

import awkward as ak
import numpy as np
import pytest
import uproot

import mlaas4hep_nb as mn
from mlaas4hep_nb.data.stream import NonFiniteWarning
from mlaas4hep_nb.errors import EmptyDataError, SchemaError

BRANCHES = ["event", "nJet", "Jet_pt", "Jet_btagDeepB", "MET_pt", "Muon_charge"]


def collect(chunks):
    parts = list(chunks)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))


def expected_matrix(paths, spec, normalize):
    """The features computed independently: awkward pad_none/fill_none, then numpy scaling."""
    arrays = uproot.concatenate([f"{p}:Events" for p in paths], [b.name for b in spec.branches])
    columns, masks = [], []
    for b in spec.branches:
        if b.jagged:
            padded = ak.pad_none(arrays[b.name], b.pad, clip=True)
            values = ak.to_numpy(ak.fill_none(padded, 0)).astype(np.float64)
            mask = ~ak.to_numpy(ak.is_none(padded, axis=1))
        else:
            values = arrays[b.name].to_numpy().astype(np.float64)[:, None]
            mask = np.ones_like(values, dtype=bool)
        if normalize == "minmax":
            values = (values - b.min) / (b.max - b.min)
        elif normalize == "standard":
            values = (values - b.mean) / b.std
        columns.append(np.where(mask, values, 0.0))
        masks.append(mask)
    return np.hstack(columns), np.hstack(masks)


@pytest.mark.parametrize("normalize", ["minmax", "standard", None])
def test_features_match_an_independent_computation(tth, normalize):
    same = {
        "branches": BRANCHES,
        "shuffle": False,
        "chunk_size": 700,
        "progress": False,
        "exclude": (),
    }
    stream = mn.DataStream(tth, normalize=normalize, **same)
    x, mask, y = collect(stream.chunks())
    assert x.dtype == np.float32
    assert mask.dtype == bool
    assert y.dtype == np.float32
    assert x.shape == mask.shape == (6000, stream.n_features)
    raw = mn.DataStream(tth, normalize=None, **same)
    raw_x, _, _ = collect(raw.chunks())
    signal = raw_x[y == 1]
    expected_x, expected_mask = expected_matrix(tth[1], stream.spec, normalize)
    key = np.lexsort(
        (signal[:, stream.features.index("MET_pt")], signal[:, stream.features.index("event")])
    )
    ex_raw, _ = expected_matrix(tth[1], stream.spec, None)
    ex_key = np.lexsort(
        (ex_raw[:, stream.features.index("MET_pt")], ex_raw[:, stream.features.index("event")])
    )
    np.testing.assert_allclose(x[y == 1][key], expected_x[ex_key], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(mask[y == 1][key], expected_mask[ex_key])
    if normalize == "minmax":
        assert x.min() >= 0.0
        assert x.max() <= 1.0


def test_every_event_exactly_once_per_pass(tth):
    stream = mn.DataStream(
        tth,
        branches=["event", "MET_pt"],
        exclude=(),
        normalize=None,
        chunk_size=500,
        progress=False,
    )
    for _ in range(2):
        x, _, y = collect(stream.chunks())
        keys = set(zip(y.tolist(), x[:, 0].tolist(), x[:, 1].tolist(), strict=True))
        assert len(keys) == len(y) == 6000
    train = collect(stream.chunks("train"))
    validation = collect(stream.chunks("validation"))
    assert len(train[2]) + len(validation[2]) == 6000
    assert len(train[2]) == stream.count("train")
    assert len(validation[2]) == stream.count("validation")
    assert 0.17 < len(validation[2]) / 6000 < 0.23
    train_keys = {tuple(row) for row in np.column_stack([train[2], train[0]]).tolist()}
    valid_keys = {tuple(row) for row in np.column_stack([validation[2], validation[0]]).tolist()}
    assert not train_keys & valid_keys


def test_split_is_fixed_by_seed_not_by_chunking(tth):
    def validation_keys(**kw):
        stream = mn.DataStream(
            tth, branches=["event", "MET_pt"], exclude=(), normalize=None, progress=False, **kw
        )
        x, _, y = collect(stream.chunks("validation"))
        return {tuple(row) for row in np.column_stack([y, x]).tolist()}

    base = validation_keys(chunk_size=1000, seed=1)
    assert validation_keys(chunk_size=333, seed=1, shuffle=False) == base
    assert validation_keys(chunk_size=1000, seed=2) != base


def test_shuffle_is_deterministic_and_changes_every_pass(tth):
    def passes(seed):
        stream = mn.DataStream(tth, branches=["MET_pt"], seed=seed, chunk_size=800, progress=False)
        return [collect(stream.chunks("train"))[0][:, 0] for _ in range(2)]

    first, second = passes(5)
    again_first, again_second = passes(5)
    np.testing.assert_array_equal(first, again_first)
    np.testing.assert_array_equal(second, again_second)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(np.sort(first), np.sort(second))
    assert not np.array_equal(first, passes(6)[0])


def test_every_chunk_mixes_labels_in_proportion(tmp_path):
    files = mn.datasets.make_tth(tmp_path, 1000, 3000, n_files=1)
    stream = mn.DataStream(files, branches=["MET_pt"], chunk_size=400, progress=False)
    for _, _, y in stream.chunks():
        assert abs(y.mean() - 0.25) < 0.02


def test_labels_from_a_branch(tmp_path):
    path = tmp_path / "labelled.root"
    rng = np.random.default_rng(0)
    label = rng.integers(0, 3, 900).astype(np.int32)
    with uproot.recreate(path) as file:
        file.mktree("Events", {"x": np.float32, "target": np.int32}).extend(
            {"x": (label + rng.normal(0, 0.1, 900)).astype(np.float32), "target": label}
        )
    stream = mn.DataStream(str(path), label="target", normalize=None, shuffle=False, progress=False)
    assert stream.features == ["x"]
    assert stream.classes == [0, 1, 2]
    x, _, y = collect(stream.chunks())
    np.testing.assert_array_equal(y, label.astype(np.float32))
    np.testing.assert_allclose(np.round(x[:, 0]), label)


def test_label_branch_with_bad_values(tmp_path):
    path = tmp_path / "bad_label.root"
    with uproot.recreate(path) as file:
        file.mktree("Events", {"x": np.float32, "target": np.float32}).extend(
            {"x": np.arange(4, dtype=np.float32), "target": np.array([0, 1, 0.5, 1], np.float32)}
        )
    with pytest.raises(SchemaError, match=r"label branch 'target' in .*bad_label.root"):
        mn.DataStream(str(path), label="target", progress=False)
    with pytest.raises(SchemaError, match="label branch 'nope' missing"):
        mn.DataStream(str(path), label="nope", progress=False)


def test_cut_selects_events(tth):
    stream = mn.DataStream(
        tth, branches=["nJet", "MET_pt"], cut="nJet >= 7", normalize=None, progress=False
    )
    x, _, y = collect(stream.chunks())
    expected = sum(
        int(ak.sum(uproot.open(p)["Events"]["nJet"].array() >= 7)) for p in tth[1] + tth[0]
    )
    assert len(y) == expected == stream.count()
    assert x[:, 0].min() >= 7
    assert stream.count("train") + stream.count("validation") == expected
    with pytest.raises(EmptyDataError):
        mn.DataStream(tth, cut="nJet > 99", progress=False)


def test_rntuple_streams_the_same_events(tth, tth_rntuple):
    kw = {"branches": BRANCHES, "exclude": (), "shuffle": False, "progress": False}
    ttree = collect(mn.DataStream(tth, **kw).chunks())
    rntuple = collect(mn.DataStream(tth_rntuple, **kw).chunks())
    for a, b in zip(ttree, rntuple, strict=True):
        np.testing.assert_array_equal(a, b)


def test_nonfinite_values_are_zeroed_masked_and_reported_once(tmp_path):
    path = tmp_path / "nan.root"
    with uproot.recreate(path) as file:
        tree = file.mktree("Events", {"x": np.float64, "j": "var * float64"})
        tree.extend(
            {
                "x": np.array([1.0, np.nan, 3.0, 4.0]),
                "j": ak.Array([[1.0, np.inf], [2.0], [], [np.nan]]),
            }
        )
    with pytest.warns(NonFiniteWarning, match="replaced by 0 and masked") as caught:
        stream = mn.DataStream(
            {0: [str(path)], 1: [str(path)]}, shuffle=False, chunk_size=2, progress=False
        )
        x, mask, y = collect(stream.chunks())
    assert len(caught) == 1
    assert np.isfinite(x).all()
    assert stream.report["nonfinite"] == {f"x ({path})": 2, f"j ({path})": 4}
    first, first_mask = x[y == 0], mask[y == 0]
    column = stream.features.index
    assert (first[1, column("x")], first_mask[1, column("x")]) == (0.0, False)
    assert (first[0, column("j_1")], first_mask[0, column("j_1")]) == (0.0, False)
    assert (first[0, column("j_0")], first_mask[0, column("j_0")]) == (0.0, True)
    assert (first[3, column("j_0")], first_mask[3, column("j_0")]) == (0.0, False)


def test_batches_and_adapters(tth):
    stream = mn.DataStream(tth, chunk_size=1000, batch_size=128, progress=False)
    sizes = [len(y) for _, _, y in stream.batches("train")]
    assert sum(sizes) == stream.count("train")
    assert set(sizes[:-1]) == {128}
    train = validation = 0
    for (x, _, _), (vx, _, _) in stream.split_chunks():
        train += len(x)
        validation += len(vx)
    assert (train, validation) == (stream.count("train"), stream.count("validation"))

    dataset = stream.to_tf_dataset("validation")
    x, y = next(iter(dataset))
    assert x.shape == (128, stream.n_features)
    assert y.shape == (128,)
    assert sum(int(b[1].shape[0]) for b in dataset) == stream.count("validation")
    (x, mask), y = next(iter(stream.to_tf_dataset("train", with_mask=True)))
    assert mask.dtype.name == "bool"
    keras_data = stream.to_keras("validation")
    assert keras_data.num_batches == -(-stream.count("validation") // 128)
    assert keras_data[0][0].shape == (128, stream.n_features)
    with pytest.raises(IndexError, match="shuffle=False"):
        keras_data[5]
    stream.close()


def test_tf_dataset_and_batches_give_the_same_rows(tth):
    stream = mn.DataStream(tth, chunk_size=700, batch_size=100, progress=False)
    batches = list(stream.batches("validation"))
    dataset = list(stream.to_tf_dataset("validation", with_mask=True))
    assert [len(y) for _, _, y in batches] == [int(y.shape[0]) for _, y in dataset]
    for (x, mask, y), ((tx, tmask), ty) in zip(batches, dataset, strict=True):
        np.testing.assert_array_equal(x, tx.numpy())
        np.testing.assert_array_equal(mask, tmask.numpy())
        np.testing.assert_array_equal(y, ty.numpy())


def test_head_is_the_first_rows_of_a_split(tth):
    stream = mn.DataStream(tth, chunk_size=700, progress=False)
    x, mask, y = (np.concatenate(a) for a in zip(*stream.chunks("validation"), strict=True))
    for n in (0, 5, 700, len(y) + 10):
        hx, hmask, hy = stream.head(n, "validation")
        assert (hx.dtype, hmask.dtype, hy.dtype) == (np.float32, bool, np.float32)
        np.testing.assert_array_equal(hx, x[:n])
        np.testing.assert_array_equal(hmask, mask[:n])
        np.testing.assert_array_equal(hy, y[:n])
    assert stream.head(3)[0].shape == (3, stream.n_features)


def test_bad_arguments(tth):
    with pytest.raises(ValueError, match="labels must be the integers"):
        mn.DataStream({1: tth[1], 2: tth[0]}, progress=False)
    with pytest.raises(ValueError, match="unlabelled"):
        mn.DataStream(tth[1], progress=False)
    with pytest.raises(ValueError, match="validation_fraction"):
        mn.DataStream(tth, validation_fraction=1.5, progress=False)
    with pytest.raises(ValueError, match="split must be"):
        next(mn.DataStream(tth, progress=False).chunks("test"))
    with pytest.raises(ValueError, match="normalize must be"):
        mn.DataStream(tth, normalize="log", progress=False)


def test_given_spec_is_checked_against_the_files(tth, tmp_path):
    spec = mn.compute_specs(tth[1], branches=["MET_pt", "Jet_pt"], progress=False)
    stream = mn.DataStream(tth, specs=spec.save(tmp_path / "spec.json"), progress=False)
    assert stream.features == spec.features
    other = tmp_path / "other.root"
    with uproot.recreate(other) as file:
        file.mktree("Events", {"MET_pt": np.float32}).extend({"MET_pt": np.ones(3, np.float32)})
    with pytest.raises(SchemaError, match="'Jet_pt' missing in .*other.root"):
        mn.DataStream({0: [str(other)], 1: tth[1]}, specs=spec, progress=False)


def test_import_does_not_load_tensorflow():
    code = (
        "import sys, mlaas4hep_nb as mn; mn.DataStream; mn.list_trees; mn.compute_specs; "
        "mn.datasets; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
