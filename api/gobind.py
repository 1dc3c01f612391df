"""gin's request binding as the Go original ran it, with Go's own error texts.

``bind_create_task`` is ``c.ShouldBindJSON(&types.CreateTaskRequest{})`` (encoding/json's
Decoder, then the validator's ``required`` tags); ``bind_list_query`` is ``c.ShouldBindQuery``
of ``types.ListTasksRequest``. A caller that parses the original's messages sees the same ones.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass

from sytq.gojson import go_text


class BindError(ValueError):
    """The request does not bind; the message is the one gin's binding returned."""


# --- strconv.Quote -------------------------------------------------------------------------------

_QUOTE_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def _is_go_printable(char: str) -> bool:
    # strconv.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space.
    return char == " " or unicodedata.category(char)[0] in "LMNPS"


def _quote_body(text: str) -> str:
    out: list[str] = []
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char in '"\\':
            out.append("\\" + char)
        elif _is_go_printable(char):
            out.append(char)
        elif char in _QUOTE_ESCAPES:
            out.append(_QUOTE_ESCAPES[char])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\ufffd")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def go_quote(text: str) -> str:
    """strconv.Quote."""
    return '"' + _quote_body(text) + '"'


def _quote_char(byte: int) -> str:
    """encoding/json's quoteChar: a byte as the scanner names it."""
    if byte == 0x27:
        return "'\\''"
    if byte == 0x22:
        return "'\"'"
    return "'" + _quote_body(chr(byte)) + "'"


# --- strconv.ParseInt(s, 10, 64) -----------------------------------------------------------------

_UINT64_MAX = (1 << 64) - 1
_UINT64_CUTOFF = _UINT64_MAX // 10 + 1


def go_parse_int(text: str) -> int:
    """strconv.ParseInt(text, 10, 64), raising with Go's message."""
    digits = text
    negative = False
    if digits[:1] in ("+", "-"):
        negative = digits[0] == "-"
        digits = digits[1:]
    syntax = BindError(f"strconv.ParseInt: parsing {go_quote(text)}: invalid syntax")
    out_of_range = BindError(f"strconv.ParseInt: parsing {go_quote(text)}: value out of range")
    if not digits:
        raise syntax
    value = 0
    for char in digits:
        if not "0" <= char <= "9":
            raise syntax
        if value >= _UINT64_CUTOFF:
            raise out_of_range  # ParseUint stops at the overflow, before any later bad byte
        value = value * 10 + ord(char) - 48
        if value > _UINT64_MAX:
            raise out_of_range
    if (not negative and value >= 1 << 63) or (negative and value > 1 << 63):
        raise out_of_range
    return -value if negative else value


# --- encoding/json's scanner, as json.Decoder runs it ----------------------------------------------

_SPACE = frozenset(b" \t\r\n")
_DIGITS = frozenset(b"0123456789")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_MAX_DEPTH = 10000
_LITERALS = {0x74: b"true", 0x66: b"false", 0x6E: b"null"}


class _Syntax(Exception):
    pass


@dataclass
class _Member:
    """One top-level object member: the key's and the value's raw bytes."""

    key: bytes
    value: bytes


class _Scanner:
    """Go's scanner over one value, iterative (nesting goes 10,000 deep), keeping the top-level
    object's members so that only they are decoded."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0
        self.members: list[_Member] = []

    def peek(self) -> int | None:
        return self.data[self.at] if self.at < len(self.data) else None

    def need(self) -> int:
        """The next byte; the body ending here is Go's ``unexpected EOF``."""
        if self.at >= len(self.data):
            raise _Syntax("unexpected EOF")
        return self.data[self.at]

    def fail(self, context: str) -> _Syntax:
        return _Syntax(f"invalid character {_quote_char(self.data[self.at])} {context}")

    def skip_space(self) -> None:
        while self.at < len(self.data) and self.data[self.at] in _SPACE:
            self.at += 1

    def value(self) -> None:
        stack: list[int] = []  # 0x7B or 0x5B per open container
        key_start = key_end = value_start = 0
        while True:
            # a value starts here
            self.skip_space()
            byte = self.need()
            if len(stack) == 1 and stack[0] == 0x7B:
                value_start = self.at
            if byte in (0x7B, 0x5B):
                if len(stack) + 1 > _MAX_DEPTH:
                    raise self.fail("exceeded max depth")
                stack.append(byte)
                self.at += 1
                self.skip_space()
                if self.need() == byte + 2:  # } or ]
                    self.at += 1
                    stack.pop()
                elif byte == 0x7B:
                    key = self.key()
                    if len(stack) == 1:
                        key_start, key_end = key
                    continue
                else:
                    continue
            elif byte == 0x22:
                self.string()
            elif byte == 0x2D or byte in _DIGITS:
                self.number()
            elif byte in _LITERALS:
                self.literal()
            else:
                raise self.fail("looking for beginning of value")
            # after a value: close containers until one continues
            while True:
                if len(stack) == 1 and stack[0] == 0x7B:
                    self.members.append(
                        _Member(self.data[key_start:key_end], self.data[value_start : self.at])
                    )
                if not stack:
                    return
                self.skip_space()
                byte = self.need()
                if byte == 0x2C:
                    self.at += 1
                    if stack[-1] == 0x7B:
                        key = self.key()
                        if len(stack) == 1:
                            key_start, key_end = key
                    break
                if byte == stack[-1] + 2:
                    self.at += 1
                    stack.pop()
                    continue
                raise self.fail("after object key:value pair" if stack[-1] == 0x7B else "after array element")

    def key(self) -> tuple[int, int]:
        self.skip_space()
        if self.need() != 0x22:
            raise self.fail("looking for beginning of object key string")
        start = self.at
        self.string()
        end = self.at
        self.skip_space()
        if self.need() != 0x3A:
            raise self.fail("after object key")
        self.at += 1
        return start, end

    def string(self) -> None:
        self.at += 1
        while True:
            byte = self.need()
            if byte == 0x22:
                self.at += 1
                return
            if byte < 0x20:
                raise self.fail("in string literal")
            self.at += 1
            if byte == 0x5C:
                escape = self.need()
                if escape == 0x75:  # u
                    for _ in range(4):
                        self.at += 1
                        if self.need() not in _HEX:
                            raise self.fail("in \\u hexadecimal character escape")
                elif escape not in b'bfnrt\\/"':
                    raise self.fail("in string escape code")
                self.at += 1

    def digits(self) -> None:
        while self.peek() in _DIGITS:
            self.at += 1

    def number(self) -> None:
        if self.need() == 0x2D:
            self.at += 1
            if self.need() not in _DIGITS:
                raise self.fail("in numeric literal")
        if self.need() == 0x30:
            self.at += 1
        else:
            self.digits()
        if self.peek() == 0x2E:
            self.at += 1
            if self.need() not in _DIGITS:
                raise self.fail("after decimal point in numeric literal")
            self.digits()
        if self.peek() in (0x65, 0x45):
            self.at += 1
            if self.need() in (0x2B, 0x2D):
                self.at += 1
            if self.need() not in _DIGITS:
                raise self.fail("in exponent of numeric literal")
            self.digits()

    def literal(self) -> None:
        word = _LITERALS[self.data[self.at]]
        self.at += 1
        for expected in word[1:]:
            if self.need() != expected:
                raise self.fail(f"in literal {word.decode()} (expecting {_quote_char(expected)})")
            self.at += 1


def _first_value(raw: bytes) -> tuple[bytes, list[_Member]]:
    """The first JSON value of the body as json.Decoder.Decode reads it (the rest is ignored),
    and its members if it is an object."""
    scanner = _Scanner(raw)
    scanner.skip_space()
    if scanner.peek() is None:
        raise BindError("EOF")
    start = scanner.at
    try:
        scanner.value()
    except _Syntax as exc:
        raise BindError(str(exc)) from None
    return raw[start : scanner.at], scanner.members


# --- decoding into types.CreateTaskRequest --------------------------------------------------------

_REQUEST_TYPE = "types.CreateTaskRequest"
# (JSON name, Go field name, Go type) in declaration order.
_FIELDS = (("table_name", "TableName", "string"), ("id", "ID", "int64"))
_NOT_UTF8 = re.compile("[\udc80-\udcff]")


def _kind(value: bytes) -> str:
    """The ``Value`` of Go's UnmarshalTypeError for a JSON value, from its first byte."""
    return {0x22: "string", 0x7B: "object", 0x5B: "array", 0x74: "bool", 0x66: "bool"}.get(value[0], "number")


def _go_string_value(literal: bytes) -> str:
    """A JSON string's value as Go decodes it: each byte that is not UTF-8 becomes U+FFFD."""
    decoded: str = json.loads(_NOT_UTF8.sub("\ufffd", go_text(literal)))
    return decoded


def _fold(text: str) -> str:
    # encoding/json matches keys case-insensitively when no exact match exists.
    return "".join(c.upper() if c.isascii() else c.lower().upper()[:1] for c in text)


_FOLDED_FIELDS = {_fold(name): name for name, _, _ in _FIELDS}


def _field_value(name: str, literal: bytes) -> str | int:
    """A member's value for its field, or BindError naming what Go could not unmarshal."""
    kind = _kind(literal)
    if name == "table_name" and kind == "string":
        return _go_string_value(literal)
    if name == "id" and kind == "number":
        try:
            return go_parse_int(literal.decode())
        except BindError:
            kind = f"number {literal.decode()}"
    go_type = "string" if name == "table_name" else "int64"
    where = f"Go struct field CreateTaskRequest.{name} of type {go_type}"
    raise BindError(f"json: cannot unmarshal {kind} into {where}")


_REQUIRED = "Key: 'CreateTaskRequest.{0}' Error:Field validation for '{0}' failed on the 'required' tag"


# The body every caller sends, in either key order: plain table name, non-zero integer id, nothing
# else. Go decodes it to exactly these two values, so the scanner below is only for everything else.
_WS = rb"[ \t\r\n]*"  # JSON's whitespace only (\s would admit \f and \v)
_PLAIN_TABLE = rb'"table_name"' + _WS + rb":" + _WS + rb'"([A-Za-z0-9_]+)"'
_PLAIN_ID = rb'"id"' + _WS + rb":" + _WS + rb"(-?[1-9][0-9]{0,18})"
_PLAIN_BODIES = tuple(
    re.compile(_WS + rb"\{" + _WS + first + _WS + rb"," + _WS + second + _WS + rb"\}" + _WS)
    for first, second in ((_PLAIN_TABLE, _PLAIN_ID), (_PLAIN_ID, _PLAIN_TABLE))
)
_INT64 = range(-(2**63), 2**63)


def _plain_body(raw: bytes) -> tuple[str, int] | None:
    for at, pattern in enumerate(_PLAIN_BODIES):
        match = pattern.fullmatch(raw)
        if match is not None:
            table, number = match.groups() if at == 0 else reversed(match.groups())
            record_id = int(number)
            return (table.decode(), record_id) if record_id in _INT64 else None
    return None


def bind_create_task(raw: bytes) -> tuple[str, int]:
    """``(table_name, id)`` from a body, or BindError with the message gin answered."""
    plain = _plain_body(raw)
    return plain if plain is not None else bind_scanned(raw)


def bind_scanned(raw: bytes) -> tuple[str, int]:
    """``bind_create_task`` for any body, through Go's scanner and decoder rules."""
    value, members = _first_value(raw)
    if value != b"null" and value[0] != 0x7B:
        raise BindError(f"json: cannot unmarshal {_kind(value)} into Go value of type {_REQUEST_TYPE}")
    values: dict[str, str | int] = {"table_name": "", "id": 0}
    first_error: BindError | None = None
    for member in members:
        key = _go_string_value(member.key)
        name = key if key in values else _FOLDED_FIELDS.get(_fold(key))
        if name is None or member.value == b"null":
            continue
        try:
            values[name] = _field_value(name, member.value)
        except BindError as exc:
            # Go's decoder carries on past a type error and reports the first one.
            first_error = first_error or exc
    if first_error is not None:
        raise first_error
    missing = [_REQUIRED.format(go_name) for name, go_name, _ in _FIELDS if not values[name]]
    if missing:
        raise BindError("\n".join(missing))
    table_name, record_id = values["table_name"], values["id"]
    assert isinstance(table_name, str) and isinstance(record_id, int)
    return table_name, record_id


# --- ShouldBindQuery of types.ListTasksRequest ---------------------------------------------------


def _unhex(pair: bytes) -> int | None:
    try:
        return int(pair, 16) if len(pair) == 2 and all(b in _HEX for b in pair) else None
    except ValueError:
        return None


def _query_unescape(part: bytes) -> bytes | None:
    """net/url.QueryUnescape; None where Go reports an error (the pair is then dropped)."""
    out = bytearray()
    at = 0
    while at < len(part):
        byte = part[at]
        if byte == 0x25:
            value = _unhex(part[at + 1 : at + 3])
            if value is None:
                return None
            out.append(value)
            at += 3
        else:
            out.append(0x20 if byte == 0x2B else byte)
            at += 1
    return bytes(out)


def parse_query(raw: bytes) -> dict[str, list[str]]:
    """net/url.ParseQuery as ``Request.URL.Query()`` runs it: bad pairs are skipped."""
    values: dict[str, list[str]] = {}
    for pair in raw.split(b"&"):
        if not pair or b";" in pair:
            continue
        key, _, value = pair.partition(b"=")
        key_text, value_text = _query_unescape(key), _query_unescape(value)
        if key_text is None or value_text is None:
            continue
        values.setdefault(go_text(key_text), []).append(go_text(value_text))
    return values


@dataclass(frozen=True)
class ListQuery:
    status: str
    queue_name: str
    limit: int
    offset: int


def bind_list_query(raw_query: bytes) -> ListQuery:
    """The query's fields in struct order; an int that does not parse is gin's error."""
    values = parse_query(raw_query)

    def text(name: str) -> str:
        return values.get(name, [""])[0]

    def number(name: str) -> int:
        return go_parse_int(text(name) or "0")

    status, queue_name = text("status"), text("queue_name")
    limit = number("limit")
    offset = number("offset")
    return ListQuery(status, queue_name, limit, offset)
