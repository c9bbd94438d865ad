"""Widgets for JupyterLab, Binder and SWAN: thin views over the plain API, stock ipywidgets only.

``Browser`` (sources and specs), ``TrainingPanel`` (stream and trainer),
``DeployPanel`` (TFaaS client) and ``Workbench`` (the three as tabs). Every
button calls a method that code can call too; long work runs in a thread so
the notebook stays responsive, and errors show in the panel.
"""

from __future__ import annotations

from .browser import Browser, Selection

__all__ = ["Browser", "Selection"]


def __dir__() -> list[str]:
    return __all__
