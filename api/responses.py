"""Answers whose body is ready bytes, sent with Starlette's headers but without its generic building."""

from __future__ import annotations

from fastapi.responses import Response


class ReadyResponse(Response):
    """A 200 with a ready body: the headers ``Response(body, media_type=...)`` writes (content-length,
    then content-type) in the same order, built directly (this is every submit's answer)."""

    def __init__(self, body: bytes, content_type: bytes) -> None:
        self.status_code = 200
        self.background = None
        self.body = body
        self.raw_headers = [(b"content-length", b"%d" % len(body)), (b"content-type", content_type)]
