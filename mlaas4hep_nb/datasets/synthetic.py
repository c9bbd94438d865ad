"""Synthetic NanoAOD-like files: ttH (H->bb) signal and ttbar background, and a very wide tree."""

from __future__ import annotations

import os
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

__all__ = ["make_tth", "make_wide"]

_BLOCK = 20_000  # entries per extend() call: one basket per branch per block


def __dir__() -> list[str]:
    return __all__


def _truncated_normal(rng: np.random.Generator, sigma: float, limit: float, n: int) -> np.ndarray:
    values = rng.normal(0.0, sigma, n)
    outside = np.abs(values) > limit
    values[outside] = rng.uniform(-limit, limit, int(outside.sum()))
    return values.astype(np.float32)


def _objects(
    rng: np.random.Generator, counts: np.ndarray, pt_scale: float, pt_min: float, eta_max: float
) -> dict[str, np.ndarray]:
    """pt (falling, sorted per event), eta, phi for ``counts`` objects per event."""
    total = int(counts.sum())
    pt = (pt_min + rng.exponential(pt_scale, total)).astype(np.float32)
    event_of = np.repeat(np.arange(len(counts)), counts)
    order = np.lexsort((-pt, event_of))  # descending pt inside each event
    return {
        "pt": pt[order],
        "eta": _truncated_normal(rng, 1.3, eta_max, total),
        "phi": rng.uniform(-np.pi, np.pi, total).astype(np.float32),
    }


def _jets(rng: np.random.Generator, n: int, signal: bool) -> tuple[np.ndarray, dict]:
    # ttH(bb) has two more b quarks and more jets than ttbar; the overlap keeps AUC below 1.
    n_jets = np.clip(rng.poisson(6.0 if signal else 5.4, n), 2, 15).astype(np.int32)
    jets = _objects(rng, n_jets, 52.0 if signal else 49.0, 25.0, 2.4)
    n_b = np.minimum(n_jets, rng.binomial(4, 0.7, n) + 1 if signal else rng.binomial(2, 0.9, n))
    # which jets are true b jets: the first n_b of a random permutation within each event
    event_of = np.repeat(np.arange(n), n_jets)
    rank = np.argsort(np.lexsort((rng.random(event_of.size), event_of)), kind="stable")
    first = np.repeat(np.cumsum(n_jets) - n_jets, n_jets)
    is_b = (rank - first) < np.repeat(n_b, n_jets)
    btag = np.where(is_b, rng.beta(3.0, 1.6, event_of.size), rng.beta(1.0, 5.0, event_of.size))
    jets["mass"] = (jets["pt"] * rng.lognormal(-2.0, 0.35, event_of.size)).astype(np.float32)
    jets["btagDeepB"] = btag.astype(np.float32)
    return n_jets, jets


def _leptons(rng: np.random.Generator, n: int, electron: bool) -> tuple[np.ndarray, dict]:
    # semileptonic ttbar(+H): one lepton in about half the events of each flavour, sometimes two
    has = rng.random(n) < 0.5
    counts = (has.astype(np.int32) + (rng.random(n) < 0.08)).astype(np.int32)
    objs = _objects(rng, counts, 35.0, 10.0 if electron else 5.0, 2.5 if electron else 2.4)
    objs["charge"] = rng.choice(np.array([-1, 1], dtype=np.int32), int(counts.sum()))
    return counts, objs


def _events(rng: np.random.Generator, n: int, signal: bool, first_event: int) -> dict:
    """One block of events: flat columns as numpy, collections as awkward records."""
    n_jets, jets = _jets(rng, n, signal)
    n_el, electrons = _leptons(rng, n, electron=True)
    n_mu, muons = _leptons(rng, n, electron=False)
    return {
        "run": np.full(n, 1 if signal else 2, dtype=np.uint32),
        "luminosityBlock": (1 + (first_event + np.arange(n)) // 1000).astype(np.uint32),
        "event": (first_event + np.arange(n) + 1).astype(np.uint64),
        "Jet": ak.zip({k: ak.unflatten(v, n_jets) for k, v in jets.items()}),
        "Electron": ak.zip({k: ak.unflatten(v, n_el) for k, v in electrons.items()}),
        "Muon": ak.zip({k: ak.unflatten(v, n_mu) for k, v in muons.items()}),
        "MET_pt": rng.exponential(62.0 if signal else 55.0, n).astype(np.float32),
        "MET_phi": rng.uniform(-np.pi, np.pi, n).astype(np.float32),
    }


def _flattened(block: dict) -> dict:
    """NanoAOD naming for formats without counters: nJet, Jet_pt, ... as top-level fields."""
    flat = {}
    for name, column in block.items():
        if isinstance(column, ak.Array):
            flat[f"n{name}"] = ak.num(column).to_numpy().astype(np.int32)
            flat.update({f"{name}_{field}": column[field] for field in column.fields})
        else:
            flat[name] = column
    return flat


def _write(path: Path, blocks, fmt: str) -> None:
    with uproot.recreate(path) as file:
        tree = None
        for block in blocks:
            if fmt == "RNTuple":
                block = _flattened(block)
            if tree is None and fmt == "TTree":
                # records become a counter nJet plus Jet_pt, Jet_eta, ... as in NanoAOD
                tree = file.mktree(
                    "Events", {k: ak.Array(v).type.content for k, v in block.items()}
                )
            if tree is None:
                file["Events"] = block
                tree = file["Events"]
            else:
                tree.extend(block)


def make_tth(
    out_dir: str | os.PathLike,
    n_signal: int,
    n_background: int,
    seed: int = 0,
    fmt: str = "TTree",
    n_files: int = 1,
) -> dict[int, list[str]]:
    """Write ttH (label 1) and ttbar (label 0) events as NanoAOD-like ROOT files.

    Parameters
    ----------
    out_dir : folder to write into (created if missing).
    n_signal, n_background : events per class, spread evenly over ``n_files`` files each.
    seed : the random seed; the same seed writes the same events.
    fmt : ``"TTree"`` or ``"RNTuple"``; the tree is called ``Events`` either way.
    n_files : files per class.

    Returns
    -------
    ``{1: [signal files], 0: [background files]}``, usable as `DataStream` sources.
    """
    if fmt not in ("TTree", "RNTuple"):
        msg = f"fmt must be 'TTree' or 'RNTuple', not {fmt!r}"
        raise ValueError(msg)
    if n_files < 1 or n_signal < 1 or n_background < 1:
        msg = "n_signal, n_background and n_files must be at least 1"
        raise ValueError(msg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[int, list[str]] = {1: [], 0: []}
    for label, name, total in ((1, "tth", n_signal), (0, "ttbar", n_background)):
        sizes = np.diff(np.linspace(0, total, n_files + 1).astype(int))
        first = 0
        for index, size in enumerate(sizes):
            rng = np.random.default_rng([seed, label, index])
            path = out / f"{name}_{index}.root"
            starts = range(first, first + int(size), _BLOCK)
            blocks = (
                _events(rng, min(_BLOCK, first + int(size) - start), bool(label), start)
                for start in starts
            )
            _write(path, blocks, fmt)
            first += int(size)
            result[label].append(str(path))
    return result


def make_wide(
    path: str | os.PathLike,
    n_collections: int = 55,
    n_columns: int = 18,
    n_events: int = 50,
    seed: int = 3,
) -> str:
    """Write a tree as wide as NanoAOD: ``n_collections`` collections of ``n_columns`` each.

    Collection ``Coll07`` is a counter ``nColl07`` and jagged columns
    ``Coll07_f00``... (random values): 55 x 19 = 1,045 branches by default, to
    try the Browser and its filters at NanoAOD's scale. Returns the path.
    """
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 4, n_events)
    columns = {
        f"Coll{c:02d}": ak.zip(
            {
                f"f{k:02d}": ak.unflatten(rng.random(int(counts.sum())), counts)
                for k in range(n_columns)
            }
        )
        for c in range(n_collections)
    }
    with uproot.recreate(path) as file:
        file.mktree("Events", {name: value.type.content for name, value in columns.items()})
        file["Events"].extend(columns)
    return os.fspath(path)
