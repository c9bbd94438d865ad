"""Large arrays mapped straight from the operating system, returned to it when freed.

glibc serves an allocation under its mmap threshold (a threshold that rises
to 32 MiB as mapped blocks are freed) from a heap of the thread that makes
it, and keeps what is freed there for later: a stream whose reader threads
make blocks of converted rows that its main thread frees held up to 290 MB
of freed memory in those heaps (wide files, 1,900 features). The converted
rows of a stream are mapped instead; their pages are zero until written.
"""

from __future__ import annotations

import math
import mmap
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

__all__ = ["mapped_zeros"]

_SMALL = 2**20  # smaller arrays come from numpy: a mapping costs a system call and a page
# private: a shared mapping would be shared with forked processes (and counted as shmem)
_PRIVATE = getattr(mmap, "MAP_PRIVATE", None)
_HUGE = getattr(mmap, "MADV_HUGEPAGE", None)


def __dir__() -> list[str]:
    return __all__


def mapped_zeros(
    shape: tuple[int, ...], dtype: DTypeLike, huge: bool = False
) -> np.ndarray[Any, Any]:
    """``np.zeros(shape, dtype)``, in memory of its own when large.

    ``huge`` asks for huge pages (fewer page faults) for an array whose pages
    are all written soon anyway: a huge page is resident as soon as one byte
    of it is written.
    """
    size = math.prod(shape) * np.dtype(dtype).itemsize
    if size < _SMALL or _PRIVATE is None:  # (Windows has no private anonymous mappings)
        return np.zeros(shape, dtype)
    memory = mmap.mmap(-1, size, flags=_PRIVATE | mmap.MAP_ANONYMOUS)
    if huge and _HUGE is not None:
        memory.madvise(_HUGE)
    return np.frombuffer(memory, dtype).reshape(shape)
