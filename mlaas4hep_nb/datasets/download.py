"""Fetch the registered public files: downloaded once into a cache (pooch) or streamed.

A site or CI points ``MLAAS4HEP_DATA_URL`` (or ``base_url=``) at a mirror: a
web server holding the files under their registered file names.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import SourceError
from .registry import REGISTRY, Dataset

__all__ = ["MIRROR_VARIABLE", "DataFetchError", "available", "data_cache_dir", "fetch"]

#: the environment variable naming a mirror (base URL) of the registered files
MIRROR_VARIABLE = "MLAAS4HEP_DATA_URL"
_PROTOCOLS = ("https", "root")
_TIMEOUT = 30  # seconds without an answer before a download attempt fails


def __dir__() -> list[str]:
    return __all__


class DataFetchError(SourceError):
    """A registered file that cannot be downloaded, or whose download fails its sha256."""


def available() -> list[Dataset]:
    """The registered files: name, size, description, tree, and whether they are streamed."""
    return list(REGISTRY)


def _entry(name: str) -> Dataset:
    for dataset in REGISTRY:
        if dataset.name == name:
            return dataset
    names = ", ".join(d.name for d in REGISTRY)
    msg = f"no dataset {name!r}; the registered ones are {names}"
    raise ValueError(msg)


def data_cache_dir() -> Path:
    """Where downloads are kept: ``$MLAAS4HEP_DATA_DIR``, else the user cache folder."""
    if os.environ.get("MLAAS4HEP_DATA_DIR"):
        return Path(os.environ["MLAAS4HEP_DATA_DIR"])
    if os.environ.get("MLAAS4HEP_NB_CACHE"):
        return Path(os.environ["MLAAS4HEP_NB_CACHE"]) / "data"
    import pooch

    return Path(pooch.os_cache("mlaas4hep_nb")) / "data"


def _mirror(base_url: str | None) -> str | None:
    mirror = base_url or os.environ.get(MIRROR_VARIABLE) or None
    return mirror.rstrip("/") if mirror else None


def _stream_url(dataset: Dataset, mirror: str | None, protocol: str) -> str:
    if mirror is not None:
        return f"{mirror}/{dataset.filename}"
    if protocol == "https":
        return dataset.url
    if dataset.xrootd is None:
        msg = f"{dataset.name} has no root:// location; stream it over https"
        raise ValueError(msg)
    return dataset.xrootd


@contextlib.contextmanager
def _pooch_quiet() -> Iterator[None]:
    """Pooch logs each download at INFO on stderr; the progress bar says it already."""
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _download(dataset: Dataset, mirror: str | None, cache: Path, progress: bool, retries: int):
    import pooch
    import requests
    from tqdm.auto import tqdm

    base = mirror or dataset.url.rsplit("/", 1)[0]
    url = f"{base}/{dataset.filename}"
    store = pooch.create(
        path=cache,
        base_url=f"{base}/",
        registry={dataset.filename: f"sha256:{dataset.sha256}"},
        retry_if_failed=retries,
    )
    bar = tqdm(
        desc=f"downloading {dataset.name}",
        total=dataset.size,
        unit="B",
        unit_scale=True,
        leave=False,
        disable=not progress,
    )
    downloader = pooch.HTTPDownloader(progressbar=bar, timeout=_TIMEOUT)
    try:
        with _pooch_quiet():
            return store.fetch(dataset.filename, downloader=downloader)
    except requests.RequestException as err:
        msg = (
            f"cannot download {dataset.name} from {url} ({_reason(err)}). "
            f"Offline or blocked? Point {MIRROR_VARIABLE} (or fetch(..., base_url=...)) at a "
            f"mirror serving {dataset.filename}."
        )
        raise DataFetchError(msg) from None
    except ValueError as err:  # pooch: the sha256 of the download is not the registered one
        msg = (
            f"the download of {dataset.name} from {url} does not match its registered sha256 "
            f"{dataset.sha256}; it was refused and not kept ({err})"
        )
        raise DataFetchError(msg) from None
    finally:
        bar.close()


def _reason(err) -> str:
    """What went wrong with a request, in a few words."""
    import requests

    text = str(err)
    if isinstance(err, requests.HTTPError) and err.response is not None:
        return f"HTTP {err.response.status_code} {err.response.reason}"
    if isinstance(err, requests.Timeout):
        return f"no answer within {_TIMEOUT} s"
    if isinstance(err, requests.exceptions.ChunkedEncodingError):
        return "the connection broke before the whole file arrived"
    if "resolve" in text or "Name or service not known" in text:
        return "host not found"
    if "refused" in text:
        return "connection refused"
    return f"{type(err).__name__}: {text[:200]}"


def fetch(
    name: str,
    *,
    base_url: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    protocol: str = "https",
    progress: bool = True,
    retries: int = 2,
) -> str:
    """The local path of a registered file, downloaded once; or the URL of a streamed one.

    Parameters
    ----------
    name : a name from `available`, e.g. ``"cms_hzz"``.
    base_url : a mirror holding the files under their registered file names;
        default ``$MLAAS4HEP_DATA_URL``, else each file's public location.
    cache_dir : where downloads are kept (default `data_cache_dir`).
    protocol : for streamed files, ``"https"`` or ``"root"`` (XRootD).
    progress : show a download progress bar.
    retries : attempts after the first when a download fails.

    Raises
    ------
    ValueError
        ``name`` is not registered, or ``protocol`` is not one it has.
    DataFetchError
        The file cannot be downloaded (the message names the URL and the mirror
        setting), or its download does not match the registered sha256 (then
        nothing is kept in the cache).
    """
    if protocol not in _PROTOCOLS:
        msg = f"protocol must be one of {_PROTOCOLS}, not {protocol!r}"
        raise ValueError(msg)
    dataset = _entry(name)
    mirror = _mirror(base_url)
    if dataset.streamed:
        return _stream_url(dataset, mirror, protocol)
    if protocol != "https":
        msg = f"{name} is downloaded over https, not streamed; it has no {protocol}:// location"
        raise ValueError(msg)
    cache = Path(cache_dir) if cache_dir is not None else data_cache_dir()
    return str(_download(dataset, mirror, cache, progress, retries))
