"""HTTP content codings of prediction bodies: gzip and deflate, in requests and answers."""

from __future__ import annotations

import zlib

from ..errors import RequestError

__all__ = ["MIN_COMPRESSED", "answer_coding", "decode_body", "encode_body"]

# answers shorter than this go uncompressed: a small gzip costs more time than it saves
MIN_COMPRESSED = 1024
# zlib window bits: gzip wrapper; zlib wrapper (HTTP's "deflate", as RFC 9110 defines it)
_WBITS = {"gzip": 31, "x-gzip": 31, "deflate": 15}


def __dir__() -> list[str]:
    return __all__


def decode_body(body: bytes, coding: str, limit: int) -> bytes:
    """``body`` decoded from its ``Content-Encoding`` (gzip, deflate or identity).

    Raises
    ------
    RequestError
        (415) for another coding, (400) for data that is not of the coding
        or cut short, (413) when the decoded body is larger than ``limit``.
    """
    coding = coding.strip().lower()
    if coding in ("", "identity"):
        return body
    wbits = _WBITS.get(coding)
    if wbits is None:
        raise RequestError(415, f"unsupported Content-Encoding {coding!r}; use gzip or deflate")
    decoder = zlib.decompressobj(wbits)
    try:
        data = decoder.decompress(body, limit + 1)
    except zlib.error as err:
        raise RequestError(400, f"the body is not valid {coding} data: {err}") from None
    if len(data) > limit:
        raise RequestError(413, f"the decoded request body is larger than {limit} bytes")
    if not decoder.eof:
        raise RequestError(400, f"the {coding} body is cut short")
    return data


def answer_coding(accept_encoding: str) -> str | None:
    """The coding to answer in for an ``Accept-Encoding`` value: gzip, deflate or None.

    Codings refused with ``q=0`` are skipped; gzip is preferred when both are accepted.
    """
    accepted = set()
    for item in accept_encoding.lower().split(","):
        name, _, params = item.partition(";")
        weight = params.replace(" ", "").removeprefix("q=")
        if weight and not weight.strip("0."):  # q=0, q=0.0, q=0.000: refused
            continue
        accepted.add(name.strip())
    for coding in ("gzip", "deflate"):
        if coding in accepted:
            return coding
    return None


def encode_body(body: bytes, coding: str) -> bytes:
    """``body`` compressed fast (level 1) as ``coding`` (gzip or deflate)."""
    encoder = zlib.compressobj(1, zlib.DEFLATED, _WBITS[coding])
    return encoder.compress(body) + encoder.flush()
