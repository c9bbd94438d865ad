"""Progress bars: a widget in notebooks, text in terminals (tqdm.auto)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from tqdm.auto import tqdm

__all__ = ["progress_bar"]


def __dir__() -> list[str]:
    return __all__


@contextlib.contextmanager
def progress_bar(
    total: int, what: str, enabled: bool = True, unit: str = "events"
) -> Iterator[tqdm[Any]]:
    """A tqdm bar counting ``unit``; a silent one when ``enabled`` is False."""
    bar = tqdm(
        total=total,
        desc=what,
        unit=unit,
        unit_scale=True,
        disable=not enabled,
        dynamic_ncols=True,
        leave=False,
    )
    try:
        yield bar
    finally:
        bar.close()
