"""Go's JSON output and gin's binding errors, against bytes written from Go's rules."""

from __future__ import annotations

import pytest

from api.gobind import (
    BindError,
    bind_create_task,
    bind_list_query,
    bind_scanned,
    go_parse_int,
    go_quote,
    parse_query,
)
from api.gojson import envelope
from sytq.gojson import GoMap, go_text, marshal

REQUIRED_TABLE = (
    "Key: 'CreateTaskRequest.TableName' Error:Field validation for 'TableName' failed on the 'required' tag"
)
REQUIRED_ID = "Key: 'CreateTaskRequest.ID' Error:Field validation for 'ID' failed on the 'required' tag"


def test_marshal_keeps_struct_order_and_sorts_maps() -> None:
    body = envelope(200, "Success", {"task_id": "t", "status": "ok", "created_at": -62135596800})
    assert (
        marshal(body)
        == b'{"code":200,"message":"Success","data":{"task_id":"t","status":"ok","created_at":-62135596800}}'
    )
    assert (
        marshal(GoMap(timestamp=5, status="ok", database="ok"))
        == b'{"database":"ok","status":"ok","timestamp":5}'
    )


def test_marshal_omits_empty_data_but_keeps_empty_lists() -> None:
    assert marshal(envelope(404, "Task not found")) == b'{"code":404,"message":"Task not found"}'
    assert (
        marshal(envelope(200, "Success", {"tasks": []}))
        == b'{"code":200,"message":"Success","data":{"tasks":[]}}'
    )


def test_marshal_escapes_as_go_does() -> None:
    # HTML characters, U+2028/9, short escapes incl. \b and \f (Go 1.22+), other controls as \u00XX,
    # DEL and non-ASCII as they are, invalid UTF-8 as U+FFFD per byte.
    text = go_text(b'<a&b>\x00\x08\x0c\n\r\t\x1f\x7f"\\/\xe2\x80\xa8\xe2\x80\xa9\xc3\xa9\xff\xe2\x82')
    expected = (
        b'"\\u003ca\\u0026b\\u003e\\u0000\\b\\f\\n\\r\\t\\u001f\x7f\\"\\\\/\\u2028\\u2029\xc3\xa9'
        b'\\ufffd\\ufffd\\ufffd"'
    )
    assert marshal(text) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "EOF"),
        (b" \n ", "EOF"),
        (b"{", "unexpected EOF"),
        (b"tru", "unexpected EOF"),
        (b"{oops", "invalid character 'o' looking for beginning of object key string"),
        (b'{"a":1,}', "invalid character '}' looking for beginning of object key string"),
        (b'{"a" 1}', "invalid character '1' after object key"),
        (b'{"a":1 "b"}', "invalid character '\"' after object key:value pair"),
        (b"[1 2]", "invalid character '2' after array element"),
        (b"{'a':1}", "invalid character '\\'' looking for beginning of object key string"),
        (b"<x>", "invalid character '<' looking for beginning of value"),
        (b"\xef\xbb\xbf{}", "invalid character '\u00ef' looking for beginning of value"),
        (b"\x00", "invalid character '\\x00' looking for beginning of value"),
        (b'{"id":01}', "invalid character '1' after object key:value pair"),
        (b'{"t":-}', "invalid character '}' in numeric literal"),
        (b'{"t":1.e5}', "invalid character 'e' after decimal point in numeric literal"),
        (b'{"t":1e+}', "invalid character '}' in exponent of numeric literal"),
        (b'{"t":fals}', "invalid character '}' in literal false (expecting 'e')"),
        (b'{"t":nulx}', "invalid character 'x' in literal null (expecting 'l')"),
        (b'{"table_name":"a\nb"}', "invalid character '\\n' in string literal"),
        (b'{"table_name":"\\x"}', "invalid character 'x' in string escape code"),
        (b'{"table_name":"\\u12g4"}', "invalid character 'g' in \\u hexadecimal character escape"),
        (b"[" * 10001, "invalid character '[' exceeded max depth"),
        (b"[1]", "json: cannot unmarshal array into Go value of type types.CreateTaskRequest"),
        (b'"s"', "json: cannot unmarshal string into Go value of type types.CreateTaskRequest"),
        (b"12", "json: cannot unmarshal number into Go value of type types.CreateTaskRequest"),
        (
            b"[" * 10000 + b"]" * 10000,
            "json: cannot unmarshal array into Go value of type types.CreateTaskRequest",
        ),
        (
            b'{"id":"5"}',
            "json: cannot unmarshal string into Go struct field CreateTaskRequest.id of type int64",
        ),
        (
            b'{"id":1.5}',
            "json: cannot unmarshal number 1.5 into Go struct field CreateTaskRequest.id of type int64",
        ),
        (
            b'{"id":1e2}',
            "json: cannot unmarshal number 1e2 into Go struct field CreateTaskRequest.id of type int64",
        ),
        (
            b'{"id":99999999999999999999}',
            "json: cannot unmarshal number 99999999999999999999 into Go struct field "
            "CreateTaskRequest.id of type int64",
        ),
        (
            b'{"id":true}',
            "json: cannot unmarshal bool into Go struct field CreateTaskRequest.id of type int64",
        ),
        (
            b'{"id":[1]}',
            "json: cannot unmarshal array into Go struct field CreateTaskRequest.id of type int64",
        ),
        (
            b'{"table_name":5,"id":"x"}',
            "json: cannot unmarshal number into Go struct field CreateTaskRequest.table_name of type string",
        ),
        (
            b'{"table_name":{"a":[1,{"b":2}]},"id":2}',
            "json: cannot unmarshal object into Go struct field CreateTaskRequest.table_name of type string",
        ),
        (b"null", f"{REQUIRED_TABLE}\n{REQUIRED_ID}"),
        (b"{}", f"{REQUIRED_TABLE}\n{REQUIRED_ID}"),
        (b'{"table_name":"v","id":0}', REQUIRED_ID),
        (b'{"id":-0,"table_name":"v"}', REQUIRED_ID),
        (b'{"id":3}', REQUIRED_TABLE),
        (b'{"table_name":null,"id":3}', REQUIRED_TABLE),
    ],
)
def test_bind_errors_are_gos(body: bytes, message: str) -> None:
    with pytest.raises(BindError) as caught:
        bind_create_task(body)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("body", "bound"),
    [
        (b'{"table_name":"v","id":1} trailing ignored', ("v", 1)),
        (b'{"TABLE_NAME":"v","Id":3}', ("v", 3)),  # Go matches keys case-insensitively
        (b'{"id":1,"id":"x","id":2,"table_name":"v"}', None),  # a type error anywhere is reported
        (b'{"ta\\u0062le_name":"q","id":-7,"extra":{"deep":[1]}}', ("q", -7)),
        (b'{"table_name":"\xff\xfe","id":1}', ("\ufffd\ufffd", 1)),
    ],
)
def test_bind_accepts_what_go_accepts(body: bytes, bound: tuple[str, int] | None) -> None:
    if bound is None:
        with pytest.raises(BindError, match="cannot unmarshal string"):
            bind_create_task(body)
    else:
        assert bind_create_task(body) == bound


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", 'strconv.ParseInt: parsing "abc": invalid syntax'),
        ("+", 'strconv.ParseInt: parsing "+": invalid syntax'),
        ("1_0", 'strconv.ParseInt: parsing "1_0": invalid syntax'),
        (" 1", 'strconv.ParseInt: parsing " 1": invalid syntax'),
        ("99999999999999999999x", 'strconv.ParseInt: parsing "99999999999999999999x": value out of range'),
        ("9223372036854775808", 'strconv.ParseInt: parsing "9223372036854775808": value out of range'),
        ("-9223372036854775809", 'strconv.ParseInt: parsing "-9223372036854775809": value out of range'),
        (go_text(b"\xff1"), 'strconv.ParseInt: parsing "\\xff1": invalid syntax'),
        ("\t\x7f\u00a0中", 'strconv.ParseInt: parsing "\\t\\x7f\\u00a0中": invalid syntax'),
    ],
)
def test_parse_int_errors_are_strconvs(text: str, message: str) -> None:
    with pytest.raises(BindError) as caught:
        go_parse_int(text)
    assert str(caught.value) == message


def test_parse_int_accepts_go_forms() -> None:
    assert go_parse_int("+5") == 5
    assert go_parse_int("-9223372036854775808") == -(2**63)
    assert go_quote('a"b\\') == '"a\\"b\\\\"'


def test_query_parsed_as_net_url() -> None:
    # ';' in a pair and bad escapes drop the pair; '+' is a space; the first value wins.
    assert parse_query(b"a=1;b=2&c=%zz&d=x+y&d=2&&e") == {"d": ["x y", "2"], "e": [""]}
    query = bind_list_query(b"status=pending&queue_name=q&limit=&offset=5&limit=7")
    assert (query.status, query.queue_name, query.limit, query.offset) == ("pending", "q", 0, 5)
    with pytest.raises(BindError, match='parsing "x"'):
        bind_list_query(b"offset=y&limit=x")  # fields bind in struct order: limit first


@pytest.mark.parametrize(
    "body",
    [
        b'{"table_name":"valuation_records","id":123}',
        b' {\n"id" : -5 ,\t"table_name":"t"} \n',
        b'{"table_name":"t","id":9223372036854775807}',
        b'{"table_name":"t","id":-9223372036854775808}',
        b'{"table_name":"t","id":1}\x0c trailing',
    ],
)
def test_plain_bodies_bind_as_the_scanner_does(body: bytes) -> None:
    assert bind_create_task(body) == bind_scanned(body)
