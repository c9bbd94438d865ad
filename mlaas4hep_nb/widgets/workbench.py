"""Workbench: Browser, TrainingPanel and DeployPanel as tabs, each step feeding the next."""

from __future__ import annotations

from typing import Any

import ipywidgets as w

from .browser import Browser
from .deploy import DeployPanel
from .training import TrainingPanel

__all__ = ["Workbench"]

TAB_TITLES = ("1 · Browse", "2 · Train", "3 · Deploy")


def __dir__() -> list[str]:
    return __all__


class Workbench:
    """Browse -> Train -> Deploy in three tabs.

    The TrainingPanel trains on the Browser's selection, and the DeployPanel
    pushes the TrainingPanel's trainer; each tab describes what it received
    when it is opened.

    Parameters
    ----------
    path : what `Browser` opens first (a path, glob, URL, list, or ``{label: files}``).
    aliases : computed features, ``{name: expression}`` or ``{label: {name: expression}}``
        per class, so that files of other schemas give the same features (`Browser`).
    label : an expression giving each event's class, instead of a class per file.
    browser : keyword arguments of `Browser` (``tree``, ``branches``, ``labels``, ``max_len``...).
    training : keyword arguments of `TrainingPanel` (``epochs``, ``batch_size``, ``model``...).
    deploy : keyword arguments of `DeployPanel` (``url``, ``token``, ``name``...).

    Attributes
    ----------
    browser, training, deploy : the three panels.
    widget : the ``Tab`` widget.
    """

    def __init__(
        self,
        path: Any = None,
        *,
        aliases: dict | None = None,
        label: str | None = None,
        browser: dict | None = None,
        training: dict | None = None,
        deploy: dict | None = None,
    ) -> None:
        self.browser = Browser(path, aliases=aliases, label=label, **(browser or {}))
        self.training = TrainingPanel(self.browser, **(training or {}))
        self.deploy = DeployPanel(self.training, **(deploy or {}))
        self.widget = w.Tab(
            [self.browser.widget, self.training.widget, self.deploy.widget], titles=TAB_TITLES
        )
        self.widget.observe(self._tab_opened, "selected_index")

    def _tab_opened(self, change: dict) -> None:
        if change["new"] == 1:
            self.training.refresh_source()
        elif change["new"] == 2:
            self.deploy.refresh_source()

    def _repr_mimebundle_(self, **kwargs: Any):
        return self.widget._repr_mimebundle_(**kwargs)
