"""gin's ``c.JSON`` answer, built from Go's encoding/json bytes (``sytq.gojson``)."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi.responses import Response

from sytq.gojson import marshal

# gin's render.JSON header, exactly.
GIN_JSON_TYPE = "application/json; charset=utf-8"


def envelope(code: int, message: str, data: object = None) -> dict[str, object]:
    """The original's ``CommonResponse{Code, Message, Data}``; ``data`` is ``omitempty``."""
    body: dict[str, object] = {"code": code, "message": message}
    if data is not None:
        body["data"] = data
    return body


def gin_json(status: int, body: object, headers: Mapping[str, str] | None = None) -> Response:
    """What ``c.JSON(status, body)`` sends."""
    return Response(marshal(body), status_code=status, media_type=GIN_JSON_TYPE, headers=headers)
