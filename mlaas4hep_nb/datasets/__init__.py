"""Data for the examples: real public HEP files (fetched or streamed) and a synthetic ttH sample.

``available()`` lists the registered files, ``fetch(name)`` gives the local
path of a downloaded one (cached, sha256-checked) or the URL of a streamed
one; ``make_tth`` writes NanoAOD-like signal and background files, ``make_wide``
a tree of a thousand branches.
"""

from __future__ import annotations

from .download import DataFetchError, available, data_cache_dir, fetch
from .registry import Dataset
from .synthetic import make_tth, make_wide

__all__ = [
    "DataFetchError",
    "Dataset",
    "available",
    "data_cache_dir",
    "fetch",
    "make_tth",
    "make_wide",
]


def __dir__() -> list[str]:
    return __all__
