"""Go's encoding/json output, byte for byte: what ``json.Marshal`` writes.

Struct fields in declaration order, map keys sorted, no spaces, ``<``, ``>``, ``&``, U+2028 and U+2029
escaped, invalid UTF-8 as U+FFFD. The Go original's HTTP answers and its record-mode callback body
both go through ``marshal`` so the bytes its clients read stay the same.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# What Go escapes in a string: controls, quote, backslash, HTML's three, two line separators, and
# lone surrogates (bytes that were not UTF-8, kept by surrogateescape).
_NEEDS_ESCAPE = re.compile('[\x00-\x1f"\\\\<>&\u2028\u2029\ud800-\udfff]')


class GoMap(dict[str, object]):
    """A Go ``map[string]interface{}``: its keys are written sorted, as Go does."""


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    if "\ud800" <= char <= "\udfff":
        return "\\ufffd"
    return f"\\u{ord(char):04x}"


def go_string(text: str) -> str:
    """A Go JSON string literal (HTML-escaping on, as in json.Marshal)."""
    return '"' + _NEEDS_ESCAPE.sub(_escape, text) + '"'


def go_text(raw: bytes) -> str:
    """Bytes as Go sees a string: invalid UTF-8 kept byte by byte (written as U+FFFD each)."""
    return raw.decode("utf-8", "surrogateescape")


def _encode(value: object, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, str):
        out.append(go_string(value))
    elif isinstance(value, Mapping):
        items = sorted(value.items()) if isinstance(value, GoMap) else list(value.items())
        out.append("{")
        for at, (key, item) in enumerate(items):
            if at:
                out.append(",")
            out.append(go_string(key))
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, Sequence):
        out.append("[")
        for at, item in enumerate(value):
            if at:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"no Go JSON form for {type(value).__name__}")


def marshal(value: object) -> bytes:
    """``json.Marshal(value)``: dicts are structs (order kept), ``GoMap`` is a map (keys sorted)."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode("utf-8", "surrogateescape")
