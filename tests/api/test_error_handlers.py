"""The error handlers tell Redis unavailability from bugs, whichever code path met it."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from api.errors import install_error_handlers


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/closed-transport")
    async def closed_transport() -> None:
        # What uvloop raises when Redis drops a connection mid-handshake (seen when Redis is killed).
        raise RuntimeError(
            "unable to perform operation on <TCPTransport closed=True reading=False 0x7f2750>; "
            "the handler is closed"
        )

    @app.get("/bug")
    async def bug() -> None:
        raise RuntimeError("a bug")

    return app


async def test_closed_transport_anywhere_is_503_with_retry_after() -> None:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        response = await client.get("/closed-transport")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    assert "unavailable" in response.json()["detail"]


async def test_other_runtime_errors_stay_500_without_a_traceback() -> None:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        response = await client.get("/bug")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error"}
