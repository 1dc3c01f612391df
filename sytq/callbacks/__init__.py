"""Callbacks: SSRF guard for targets, HMAC signing and verification, and the signed delivery."""

from sytq.callbacks.delivery import (
    CallbackDeliveryError,
    DeliveryResult,
    callback_body,
    deliver_callback,
    encode_body,
    record_callback_body,
)
from sytq.callbacks.signing import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    signed_headers,
    verify_signature,
)
from sytq.callbacks.ssrf import (
    UnresolvableCallbackHost,
    UnsafeCallbackURL,
    check_callback_url,
    parse_allow_nets,
)

__all__ = [
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "CallbackDeliveryError",
    "DeliveryResult",
    "UnresolvableCallbackHost",
    "UnsafeCallbackURL",
    "callback_body",
    "check_callback_url",
    "deliver_callback",
    "encode_body",
    "parse_allow_nets",
    "record_callback_body",
    "sign",
    "signed_headers",
    "verify_signature",
]
