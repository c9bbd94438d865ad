"""Private third-party hooks, one module per library, each with a public-API fallback.

Each hook names the private name it uses; when the library changes and the
hook is missing or its signature differs, the code falls back to a public
API and warns once, naming the hook. ``tests/test_compat.py`` fails loudly,
naming the hook, as soon as an upgrade breaks one.
"""
