"""Widgets for JupyterLab, Binder and SWAN: thin views over the plain API, stock ipywidgets only.

``Browser`` (sources and specs), ``TrainingPanel`` (stream and trainer),
``DeployPanel`` (TFaaS client) and ``Workbench`` (the three as tabs). Every
button calls a method that code can call too; long work runs in a thread so
the notebook stays responsive, and errors show in the panel with their
traceback one click away. Importing this does not import TensorFlow.
"""

from __future__ import annotations

from .browser import Browser, Selection
from .deploy import DeployPanel
from .training import TrainingPanel
from .workbench import Workbench

__all__ = ["Browser", "DeployPanel", "Selection", "TrainingPanel", "Workbench"]


def __dir__() -> list[str]:
    return __all__
