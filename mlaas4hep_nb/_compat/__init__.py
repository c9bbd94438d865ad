"""Hooks into third-party internals, kept in one place so that an upgrade breaks loudly here.

Each place where this package relies on a library's private API (an
underscored function, a subclass reaching into private attributes) lives in
this package, one module per library (``uproot``, ``uvicorn``, ``tensorflow``).
Each module checks once whether the installed version still has what the
hook uses, takes the fast path when it does, and otherwise falls back to the
library's public API, logging one warning that names the hook. The
``test_compat*`` tests fail, naming the hook, as soon as an installed
version no longer fits.
"""
