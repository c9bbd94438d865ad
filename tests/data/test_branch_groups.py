"""Branch names grouped as NanoAOD does, and the filter of the branch views."""

from __future__ import annotations

from mlaas4hep_nb.data.branch_groups import filter_names, group_names, no_match_hint

NAMES = [
    "run",
    "event",
    "nJet",
    "Jet_pt",
    "Jet_eta",
    "HLT_IsoMu24",
    "HLT_Ele27",
    "MET_pt",
    "MET_phi",
    "PV_npvs",
    "fixedGridRhoFastjetAll",
    "nMuon",
    "Muon_pt",
    "Muon_eta",
    "Muon.charge",
]


def test_collections_counters_and_prefixes_make_groups():
    groups = group_names(NAMES)
    assert groups["Jet"] == ["nJet", "Jet_pt", "Jet_eta"]
    assert groups["HLT"] == ["HLT_IsoMu24", "HLT_Ele27"]
    assert groups["Muon"] == ["nMuon", "Muon_pt", "Muon_eta", "Muon.charge"]
    # a prefix of one name is no group: PV_npvs stays with the event-level names
    assert groups[""] == ["run", "event", "PV_npvs", "fixedGridRhoFastjetAll"]
    assert sum(len(members) for members in groups.values()) == len(NAMES)


def test_filters_have_the_api_semantics():
    groups = group_names(NAMES)
    assert filter_names(NAMES, "") == NAMES
    assert filter_names(NAMES, "Jet_*") == ["Jet_pt", "Jet_eta"]
    assert filter_names(NAMES, "*_pt") == ["Jet_pt", "MET_pt", "Muon_pt"]
    assert filter_names(NAMES, "MET_pt") == ["MET_pt"]  # exact
    assert filter_names(NAMES, "met_pt") == []  # case-sensitive, as ROOT names are
    assert filter_names(NAMES, "nJet") == ["nJet"]  # not nGenJet-like substrings
    assert filter_names(NAMES, "Jet", groups) == ["nJet", "Jet_pt", "Jet_eta"]  # a group


def test_no_match_hints_say_what_would_match():
    assert no_match_hint(NAMES, "met_pt") == (
        "nothing matches 'met_pt'; names are case-sensitive: did you mean 'MET_pt'?"
    )
    hint = no_match_hint(NAMES, "Jet_")
    assert "without * or ? a filter is a whole name" in hint
    assert "try *Jet_*" in hint
    assert no_match_hint(NAMES, "Tau_*") == "nothing matches 'Tau_*'"
