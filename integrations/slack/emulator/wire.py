"""JSON on the Web API's hot path: orjson wherever it reads or writes exactly what stdlib ``json`` would.

Every chat.postMessage parses a card of blocks and writes it back in the answer; with stdlib ``json``
that was a fifth of the emulator's CPU under the end-to-end benchmark (py-spy), on cores it shares with
the gateway being measured. orjson is several times cheaper but not a drop-in replacement: it reads an
integer beyond 64 bits as a float, refuses NaN, Infinity and lone surrogates, writes a non-finite float
as ``null``, and refuses non-str keys, big integers and subclasses of built-in types. Each such input takes
stdlib ``json`` instead, so clients read, and the workspace stores, exactly what they did before. Only the
wire's spelling differs (no spaces after separators, UTF-8 instead of ``\\u`` escapes), which no JSON
reader sees.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_DIGIT_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
# orjson reads an integer outside int64/uint64 as a float, and such an integer has at least 19 digits.
# Any run that long (a number, or digits inside a string) is left to stdlib json, which keeps it exact.
_LONG_DIGIT_RUN = b"0" * 19
# Refuse what stdlib json would also refuse or write differently, so that it decides those cases.
_STRICT = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def loads(data: bytes | str) -> Any:
    """What ``json.loads`` gives for ``data`` (bytes as UTF-8), raising what it (or the decode) raises."""
    raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
    if _LONG_DIGIT_RUN not in raw.translate(_DIGIT_TO_ZERO):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # invalid, or valid only to stdlib json (NaN, 1e400, a lone surrogate): it decides
    return json.loads(data if isinstance(data, str) else data.decode("utf-8"))


def dumps(body: Any) -> bytes:
    """``body`` as JSON bytes that parse to exactly what ``json.dumps(body)`` parses to."""
    try:
        out = orjson.dumps(body, option=_STRICT)
    except TypeError:  # orjson.JSONEncodeError: stdlib json writes it (or raises as it always did)
        return json.dumps(body).encode()
    if b"null" in out:  # perhaps a NaN or Infinity, which json.dumps writes as such and orjson as null
        return json.dumps(body).encode()
    return out
