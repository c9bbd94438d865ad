"""Real public HEP files the examples use: where each lives, its size and its sha256.

Small files are downloaded once and checked against their sha256; large CERN
Open Data files are streamed (read by byte ranges over ``https://`` or
``root://``), so they carry no hash.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["REGISTRY", "SKHEP_TESTDATA", "Dataset"]

#: scikit-hep-testdata at a fixed tag: the CMS open-data files of uproot's own docs and tests
SKHEP_TESTDATA = "https://raw.githubusercontent.com/scikit-hep/scikit-hep-testdata/v0.6.7/src/skhep_testdata/data"
_ROOT_EOS = "root://eospublic.cern.ch//eos"


def __dir__() -> list[str]:
    return __all__


@dataclass(frozen=True)
class Dataset:
    """One public file: downloaded (``sha256`` known) or streamed (``sha256`` None)."""

    name: str
    filename: str
    description: str
    tree: str
    entries: int | None
    size: int | None
    sha256: str | None
    url: str
    xrootd: str | None = None

    @property
    def streamed(self) -> bool:
        """True for files read remotely by byte ranges instead of downloaded."""
        return self.sha256 is None

    @property
    def size_text(self) -> str:
        """The size for people: ``218 kB``; ``?`` when unknown."""
        if self.size is None:
            return "?"
        size, unit = float(self.size), "B"
        for bigger in ("kB", "MB", "GB"):
            if size < 1000:
                break
            size, unit = size / 1000, bigger
        return f"{size:.3g} {unit}"

    def to_dict(self) -> dict:
        return {**asdict(self), "streamed": self.streamed}


def _testdata(*fields: Unpack[tuple[str, str, str, str, int, int, str]]) -> Dataset:
    """A scikit-hep-testdata file: name, filename, description, tree, entries, size, sha256."""
    return Dataset(*fields, url=f"{SKHEP_TESTDATA}/{fields[1]}")


REGISTRY: tuple[Dataset, ...] = (
    _testdata(
        "cms_hzz",
        "uproot-HZZ.root",
        "CMS open data, simulated H->ZZ->4l: muons, electrons, jets, photons, MET (flat + jagged)",
        "events",
        2421,
        217_945,
        "baa852f7b801eee0fb7234f44864a20808d17d84fa44e712072fa881c423ad46",
    ),
    _testdata(
        "cms_zmumu",
        "uproot-Zmumu.root",
        "CMS open data, Z->mumu events from 2010: the two muons as flat columns (pt1, eta1, ...)",
        "events",
        2304,
        178_971,
        "8290ddc1f2b1f866f30df016558936da27107f7f5b87e574c741f2baab1bad64",
    ),
    _testdata(
        "cms_drell_yan",
        "uproot-small-dy-withoffsets.root",
        "CMS simulated Drell-Yan, NanoAOD-like: nMuon/Muon_*, nJet/Jet_* (a small sample)",
        "tree",
        501,
        22_443,
        "e78d9385420e4d7cc047f98761f86f885a49265859f0ea4b7aa69aefa9e9a39e",
    ),
    _testdata(
        "cms_nanoaod_ttbar",
        "nanoAOD_2015_CMS_Open_Data_ttbar.root",
        "CMS open data 2015 ttbar in NanoAOD (TTree, about 950 branches)",
        "Events",
        200,
        377_623,
        "c14a29b25b15b837226f396e920b5d9fb134f3558bef5b0a9db5d6d9606c5f3a",
    ),
    _testdata(
        "cms_nanoaod_ttbar_rntuple",
        "cmsopendata2015_ttbar_19980_NANOAOD_RNTupleImporter_rntuple_v1-0-0-1.root",
        "CMS open data 2015 ttbar NanoAOD converted by ROOT's RNTupleImporter (RNTuple)",
        "Events",
        10,
        50_467,
        "80782b7d1baa5fe6c7c9746a300245b410d71ddcea506389798bb2d42645e2a6",
    ),
    _testdata(
        "cms_dimuon_rntuple",
        "Run2012BC_DoubleMuParked_Muons_1000evts_rntuple_v1-0-0-0.root",
        "CMS open data 2012 DoubleMuParked, 1000 events of nMuon/Muon_* (RNTuple)",
        "Events",
        1000,
        27_643,
        "6a71d6ca866b76c8d89689dfce2cc402aecd2aea0ff03a650db9fe78e60b8385",
    ),
    _testdata(
        "cms_hzz_objects",
        "uproot-HZZ-objects.root",
        "the H->ZZ->4l events with TLorentzVector objects (muonp4, jetp4, ...)",
        "events",
        2421,
        443_685,
        "7943eb72b0bcb78d8f1b312aaaaa072c8e29fb36bfc7efda21c2e2aeaa660c25",
    ),
    _testdata(
        "cms_hzz_lzma",
        "uproot-HZZ-lzma.root",
        "the H->ZZ->4l events compressed with LZMA",
        "events",
        2421,
        184_196,
        "770e3a54b13c5cb7378b994f13d263ba83b811f9089bd730aa26440a0dd2a4ac",
    ),
    _testdata(
        "cms_hzz_zstd",
        "uproot-HZZ-zstd.root",
        "the H->ZZ->4l events compressed with ZSTD",
        "events",
        2421,
        225_552,
        "d758791f28ac6120cd06a7099dd7ab5e03c5ecc5d0f3de4f75743841791ba9d2",
    ),
    # CERN Open Data: streamed, not downloaded (MLaaS4HEP's recipe uses the two tau-tau files)
    Dataset(
        "opendata_higgs_tautau_ggf",
        "GluGluToHToTauTau.root",
        "CMS open data, gluon-fusion H->tautau in reduced NanoAOD (MLaaS4HEP's signal example)",
        "Events",
        476_963,
        None,
        None,
        "https://opendata.cern.ch/record/12351/files/GluGluToHToTauTau.root",
        f"{_ROOT_EOS}/root-eos/HiggsTauTauReduced/GluGluToHToTauTau.root",
    ),
    Dataset(
        "opendata_higgs_tautau_vbf",
        "VBF_HToTauTau.root",
        "CMS open data, VBF H->tautau in reduced NanoAOD (MLaaS4HEP's background example)",
        "Events",
        491_653,
        None,
        None,
        "https://opendata.cern.ch/record/12352/files/VBF_HToTauTau.root",
        f"{_ROOT_EOS}/root-eos/HiggsTauTauReduced/VBF_HToTauTau.root",
    ),
    Dataset(
        "opendata_dimuon_2012",
        "Run2012BC_DoubleMuParked_Muons.root",
        "CMS open data 2012 DoubleMuParked, about 61.5M events of nMuon/Muon_* (2.1 GiB)",
        "Events",
        None,
        None,
        None,
        "https://opendata.cern.ch/record/12341/files/Run2012BC_DoubleMuParked_Muons.root",
        f"{_ROOT_EOS}/opendata/cms/derived-data/AOD2NanoAODOutreachTool/"
        "Run2012BC_DoubleMuParked_Muons.root",
    ),
)
