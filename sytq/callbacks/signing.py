"""HMAC-SHA256 signatures for callback POSTs, and the receiver-side check.

Signature = ``sha256=<hex hmac(secret, f"{timestamp}.{body}")>``; the timestamp is signed too so
a captured request cannot be replayed later than the receiver's tolerance.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-SYTQ-Signature"
TIMESTAMP_HEADER = "X-SYTQ-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_TOLERANCE_SECONDS = 300


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def sign(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The X-SYTQ-Signature value for ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(_key(secret), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signed_headers(
    secret: str | bytes | None, task_id: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    """Headers of one callback POST; without a secret the signature header is left out."""
    timestamp = int(time.time() if now is None else now)
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(timestamp),
        IDEMPOTENCY_HEADER: task_id,
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
    return headers


def verify_signature(
    secret: str | bytes,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """True when ``signature`` matches ``body`` and ``timestamp`` is within the tolerance."""
    if not signature or not timestamp:
        return False
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, sent_at, body), signature.strip())
