"""SSRF guard and HMAC signing of callbacks."""

from __future__ import annotations

import pytest

from sytq.callbacks import (
    UnsafeCallbackURL,
    check_callback_url,
    encode_body,
    parse_allow_nets,
    record_callback_body,
    sign,
    signed_headers,
    verify_signature,
)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/hook", "loopback"),
        ("http://127.8.9.10:9000/", "loopback"),
        ("http://localhost:8080/hook", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://10.0.0.5/", "private"),
        ("http://172.16.3.4/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://100.100.100.200/", "metadata"),
        ("http://169.254.10.10/", "link-local"),
        ("http://224.0.0.1/", "multicast"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://100.64.0.1/", "not globally routable"),
        # IPv6 addresses that carry an IPv4 address end up there: judged by the embedded one.
        ("http://[::ffff:10.0.0.1]/", r"private \(IPv4-mapped address embedding 10.0.0.1\)"),
        ("http://[2002:a00:1::1]/", r"private \(6to4 address embedding 10.0.0.1\)"),
        ("http://[2002:7f00:1::]/", r"loopback \(6to4 address embedding 127.0.0.1\)"),
        ("http://[2002:a9fe:a9fe::1]/", r"metadata address \(6to4 address embedding 169.254.169.254\)"),
        ("http://[64:ff9b::192.168.0.1]/", r"private \(NAT64 address embedding 192.168.0.1\)"),
        ("http://[64:ff9b::127.0.0.1]/", r"loopback \(NAT64 address embedding 127.0.0.1\)"),
        ("http://[64:ff9b:1::a00:1]/", "reserved"),  # local-use NAT64 prefix: site-specific
        ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "Teredo"),
        ("http://[2001:0:a00:1::1]/", "Teredo"),
    ],
)
def test_unsafe_targets_are_refused_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(UnsafeCallbackURL, match=reason) as caught:
        check_callback_url(url, "")
    assert isinstance(caught.value, ValueError)
    assert "SYTQ_CALLBACK_ALLOW_NETS" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("http:///nohost", "no host"),
        ("http://example.com:99999/", "not a valid URL"),
        ("http://no-such-host.invalid/", "does not resolve"),
    ],
)
def test_malformed_targets_are_refused(url: str, message: str) -> None:
    with pytest.raises(UnsafeCallbackURL, match=message):
        check_callback_url(url)


def test_public_address_passes() -> None:
    check_callback_url("https://8.8.8.8/hook")
    check_callback_url("http://[2001:4860:4860::8888]:8080/")
    # Embedding a public IPv4 address is as public as that address.
    check_callback_url("http://[2002:808:808::1]/")
    check_callback_url("http://[64:ff9b::8.8.8.8]/")
    check_callback_url("http://[::ffff:8.8.8.8]/")


def test_allow_nets_exempts_exactly_those_networks() -> None:
    check_callback_url("http://127.0.0.1:9/", "127.0.0.0/8")
    check_callback_url("http://localhost:9/", "127.0.0.0/8, ::1/128")
    check_callback_url("http://10.1.2.3/", ["10.1.0.0/16"])
    with pytest.raises(UnsafeCallbackURL):
        check_callback_url("http://10.2.0.1/", ["10.1.0.0/16"])
    with pytest.raises(UnsafeCallbackURL):
        check_callback_url("http://169.254.169.254/", "127.0.0.0/8")


def test_bad_allow_nets_is_a_clear_config_error() -> None:
    with pytest.raises(ValueError, match="not a network"):
        parse_allow_nets("127.0.0.0/8,banana")
    assert parse_allow_nets(" , ") == ()


def test_signature_round_trip_and_tampering() -> None:
    body = encode_body({"task_id": "t1", "status": "succeeded", "result": {"content": "héllo"}})
    headers = signed_headers("s3cret", "t1", body, now=1_700_000_000)
    assert headers["Idempotency-Key"] == "t1"
    assert headers["X-SYTQ-Timestamp"] == "1700000000"
    signature = headers["X-SYTQ-Signature"]
    assert signature == sign("s3cret", 1_700_000_000, body) and signature.startswith("sha256=")
    assert verify_signature("s3cret", body, signature, "1700000000", now=1_700_000_100)
    assert not verify_signature("s3cret", body + b" ", signature, "1700000000", now=1_700_000_100)
    assert not verify_signature("wrong", body, signature, "1700000000", now=1_700_000_100)
    assert not verify_signature("s3cret", body, signature, "1700000001", now=1_700_000_100)
    # Replays outside the tolerance are refused even with a valid signature.
    assert not verify_signature("s3cret", body, signature, "1700000000", now=1_700_001_000)
    assert not verify_signature("s3cret", body, None, "1700000000")
    assert not verify_signature("s3cret", body, signature, "not-a-number")


def test_without_a_secret_no_signature_header_is_sent() -> None:
    headers = signed_headers(None, "t1", b"{}")
    assert "X-SYTQ-Signature" not in headers and headers["Idempotency-Key"] == "t1"


def test_record_callback_body_is_written_as_gos_json_marshal() -> None:
    # Go's rules: map keys sorted, no spaces, < > & U+2028 U+2029 as \u escapes, other non-ASCII raw.
    body = encode_body(record_callback_body('<script>&</script>\u2028é\u2029"\n', 1_700_000_000))
    assert body == (
        b'{"result":"\\u003cscript\\u003e\\u0026\\u003c/script\\u003e\\u2028\xc3\xa9\\u2029\\"\\n",'
        b'"status":"success","timestamp":1700000000}'
    )


def test_v1_callback_body_keeps_its_compact_json() -> None:
    assert encode_body({"task_id": "t1", "status": "succeeded", "result": "<a>&"}) == (
        b'{"task_id":"t1","status":"succeeded","result":"<a>&"}'
    )
