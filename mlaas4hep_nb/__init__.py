"""mlaas4hep_nb: Machine Learning as a Service for HEP, driven from Jupyter.

Browse ROOT files, stream them into TensorFlow training inside the kernel,
and serve the trained model over HTTP (TFaaS). Names are imported on first
use, so ``import mlaas4hep_nb`` is quick and never imports TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .tensorflow_logs import quiet_tensorflow_logs
from .xrootd_loader import load_xrootd

__version__ = "0.1.0"

load_xrootd()  # before anything imports TensorFlow or fsspec-xrootd: see xrootd_loader
quiet_tensorflow_logs()  # TensorFlow's start-up INFO lines are no errors: see tensorflow_logs

_EXPORTS = {
    "list_trees": "data.sources",
    "branches": "data.sources",
    "preview": "data.sources",
    "TreeInfo": "data.sources",
    "BranchInfo": "data.sources",
    "compute_specs": "data.measure",
    "FeatureSpec": "data.spec",
    "DataStream": "data.stream",
    "Trainer": "train.trainer",
    "LivePlot": "liveplot",
    "TFaaSClient": "tfaas.client",
}
_SUBMODULES = ("datasets", "tfaas", "widgets")

__all__ = [  # the names of DESIGN.md's public API
    "BranchInfo",
    "DataStream",
    "FeatureSpec",
    "LivePlot",
    "TFaaSClient",
    "Trainer",
    "TreeInfo",
    "__version__",
    "branches",
    "compute_specs",
    "datasets",
    "list_trees",
    "preview",
    "tfaas",
    "widgets",
]

if TYPE_CHECKING:
    from . import datasets, tfaas, widgets
    from .data.measure import compute_specs
    from .data.sources import BranchInfo, TreeInfo, branches, list_trees, preview
    from .data.spec import FeatureSpec
    from .data.stream import DataStream
    from .liveplot import LivePlot
    from .tfaas.client import TFaaSClient
    from .train.trainer import Trainer


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
