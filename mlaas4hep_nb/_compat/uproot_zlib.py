"""uproot's private zlib decompressor, switched to ISA-L: the same bytes, faster.

``uproot.ZLIB.library = "isal"`` is uproot's documented switch, but it also
changes how files are written (ISA-L has its own compression levels), so only
the decompressor uproot keeps for reading (``uproot.compression._decompress_ZLIB``)
is switched, and only while it is at uproot's default.
"""

from __future__ import annotations

import logging

__all__ = ["HOOK", "decompress_zlib_with_isal"]

log = logging.getLogger(__name__)

HOOK = "uproot.compression._decompress_ZLIB"


def __dir__() -> list[str]:
    return __all__


def decompress_zlib_with_isal() -> bool:
    """Have uproot decompress zlib baskets with ISA-L; whether it now does."""
    import uproot.compression

    decompressor = getattr(uproot.compression, "_decompress_ZLIB", None)
    library = getattr(decompressor, "library", None)
    if library == "isal":
        return True
    if library != "zlib":
        log.info("%s is missing or not at its default: zlib baskets stay with zlib", HOOK)
        return False
    try:
        import isal.isal_zlib  # noqa: F401  # what uproot imports for "isal"
    except ImportError:
        return False
    decompressor.library = "isal"  # type: ignore[union-attr]  # checked above
    return True
