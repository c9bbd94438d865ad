"""Defaults of the data layer's settings, written once (views import them without uproot)."""

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_CHUNK_SIZE"]

DEFAULT_CHUNK_SIZE = 10_000  # events read and converted at a time
DEFAULT_BATCH_SIZE = 256  # events per training batch
