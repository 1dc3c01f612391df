"""Health endpoints (open, no API key): liveness, readiness, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.state import app_state
from sytq import metrics_go

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Redis and the database answer", responses={503: {}})
async def readyz(request: Request) -> JSONResponse:
    state = app_state(request)
    checks = {"redis": await state.redis_ready(), "database": await state.database_ready()}
    ready = all(checks.values())
    body = {
        "status": "ready" if ready else "not ready",
        **{k: "ok" if v else "down" for k, v in checks.items()},
    }
    return JSONResponse(
        body, status_code=200 if ready else 503, headers=None if ready else {"Retry-After": "2"}
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    go_compat = app_state(request).settings.metrics_go_compat
    return Response(metrics_go.exposition(go_compat), media_type=CONTENT_TYPE_LATEST)
