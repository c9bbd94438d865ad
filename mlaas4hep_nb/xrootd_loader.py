"""Load the XRootD client library so that TensorFlow cannot break it.

TensorFlow exports its own BoringSSL symbols process-wide; an XRootD client
loaded after it binds to them and crashes (segfault in
``CRYPTO_get_ex_new_index``). Loading XRootD with ``RTLD_DEEPBIND`` makes it
use the OpenSSL it ships with, whichever of the two was imported first.
"""

from __future__ import annotations

import os
import sys

__all__ = ["load_xrootd"]


def __dir__() -> list[str]:
    return __all__


def load_xrootd() -> bool:
    """Import ``XRootD.client`` with deep binding; False when XRootD is not installed."""
    if "XRootD.client" in sys.modules:
        return True
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | getattr(os, "RTLD_DEEPBIND", 0))
    try:
        import XRootD.client  # noqa: F401
    except ImportError:
        return False
    finally:
        sys.setdlopenflags(flags)
    return True
