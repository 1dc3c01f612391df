"""Submitting tasks: the seed contract, the batch endpoint and the Go original's contract."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import Response

from api import metrics
from api.auth import ApiKey
from api.errors import FieldError
from api.models import (
    BatchItemResult,
    BatchRequest,
    BatchResponse,
    ChatTaskRequest,
    Envelope,
    ProcessTaskRequest,
    TaskAccepted,
)
from api.security import require
from api.state import AppState, app_state
from api.submitter import AlreadySubmitted, ChatSubmission
from sytq.callbacks import UnsafeCallbackURL, check_callback_url
from sytq.idempotency import MAX_KEY_LENGTH, IdempotencyKeyReused, fingerprint
from sytq.tasks import DEFAULT_QUEUE, LLMChatPayload, LLMParameters, build_messages

router = APIRouter()

SUBMIT_PATH = "/api/v1/tasks/llm"
BATCH_PATH = "/api/v1/tasks/llm:batch"
LEGACY_PATH = "/api/tasks/llm"
JSON_PATHS = frozenset({SUBMIT_PATH, BATCH_PATH, LEGACY_PATH})

_JSON = "application/json"
# A callback host that takes longer than this to resolve is refused rather than holding the request.
CALLBACK_CHECK_SECONDS = 3.0


def accepted_body(task_id: str) -> bytes:
    """The seed's response, exactly: compact JSON, task_id first (what FastAPI's encoder emitted)."""
    return b'{"task_id":"' + task_id.encode() + b'","status":"enqueued"}'


def _unprocessable(loc: list[str | int], msg: str) -> FieldError:
    return FieldError(loc, msg)


async def _check_callbacks(state: AppState, items: Iterable[tuple[list[str | int], str]]) -> None:
    """SSRF rules at submit time; each distinct URL is resolved once."""
    seen: dict[str, list[str | int]] = {}
    for loc, url in items:
        seen.setdefault(url, loc)
    for url, loc in seen.items():
        try:
            await asyncio.wait_for(
                asyncio.to_thread(check_callback_url, url, state.allow_nets), CALLBACK_CHECK_SECONDS
            )
        except UnsafeCallbackURL as exc:
            raise _unprocessable(loc, str(exc)) from exc
        except TimeoutError as exc:
            raise _unprocessable(loc, "callback_url host did not resolve in time") from exc


def _submission(
    state: AppState, req: ChatTaskRequest, key: ApiKey, task_id: str, loc: list[str | int]
) -> ChatSubmission:
    settings = state.settings
    if req.text_size() > settings.api_max_prompt_chars:
        raise _unprocessable([*loc, "prompt"], f"prompt text over {settings.api_max_prompt_chars} characters")
    try:
        payload = LLMChatPayload(
            model=req.model or settings.llm_default_model,
            messages=build_messages(req.prompt, req.messages, req.system),
            parameters=LLMParameters(
                temperature=req.temperature,
                max_tokens=req.max_tokens,
                top_p=req.top_p,
                stop=req.stop,
                response_format=req.response_format,
            ),
            callback_url=req.callback_url,
            metadata=req.metadata or {},
            client_id=key.name,
        )
    except ValueError as exc:
        raise _unprocessable(loc, _first_line(exc)) from exc
    return ChatSubmission(
        task_id=task_id,
        payload=payload,
        queue=req.queue or DEFAULT_QUEUE,
        max_retry=settings.task_max_retry if req.max_retry is None else req.max_retry,
        timeout_seconds=req.timeout_seconds or settings.task_timeout_seconds,
        retention_seconds=settings.task_retention_seconds,
        process_at=req.process_at,
        process_in=float(req.delay_seconds) if req.delay_seconds else None,
    )


def _first_line(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return "; ".join(str(e.get("msg", "")) for e in errors())
    return str(exc)


@router.post(
    SUBMIT_PATH,
    response_model=TaskAccepted,
    summary="Submit one chat completion",
    tags=["tasks"],
    responses={401: {}, 403: {}, 413: {}, 429: {}, 503: {}},
)
async def submit_llm(
    body: ChatTaskRequest,
    request: Request,
    key: ApiKey = Depends(require("submit")),  # noqa: B008
    idempotency_key: str | None = Header(default=None, max_length=MAX_KEY_LENGTH),
) -> Response:
    state = app_state(request)
    task_id = str(uuid.uuid4())
    if idempotency_key:
        try:
            task_id = await state.idempotency.claim(
                key.name, idempotency_key, fingerprint(await request.body())
            )
        except IdempotencyKeyReused as exc:
            raise HTTPException(422, str(exc)) from exc
    item = _submission(state, body, key, task_id, ["body"])
    if body.callback_url:
        await _check_callbacks(state, [(["body", "callback_url"], body.callback_url)])
    try:
        await state.submitter.submit_chat(item)
    except AlreadySubmitted:
        pass  # the same Idempotency-Key again: same answer, nothing enqueued twice
    except BaseException:
        if idempotency_key:
            await _release_quietly(state, key.name, idempotency_key)
        raise
    metrics.SUBMITTED.labels("llm").inc()
    return Response(accepted_body(task_id), media_type=_JSON)


async def _release_quietly(state: AppState, client: str, idempotency_key: str) -> None:
    try:
        await state.idempotency.release(client, idempotency_key)
    except Exception:  # Redis is probably down; the claim expires with its TTL
        return


@router.post(
    BATCH_PATH,
    response_model=BatchResponse,
    summary="Submit many chat completions in one request (one Redis round trip)",
    tags=["tasks"],
    responses={401: {}, 403: {}, 413: {}, 429: {}, 503: {}},
)
async def submit_llm_batch(
    body: BatchRequest,
    request: Request,
    key: ApiKey = Depends(require("submit")),  # noqa: B008
) -> BatchResponse:
    state = app_state(request)
    cap = state.settings.api_max_batch
    if len(body.tasks) > cap:
        raise _unprocessable(["body", "tasks"], f"at most {cap} tasks per batch, got {len(body.tasks)}")
    items = [
        _submission(state, req, key, str(uuid.uuid4()), ["body", "tasks", i])
        for i, req in enumerate(body.tasks)
    ]
    await _check_callbacks(
        state,
        (
            (["body", "tasks", i, "callback_url"], req.callback_url)
            for i, req in enumerate(body.tasks)
            if req.callback_url
        ),
    )
    outcomes = await state.submitter.submit_chat_many(items)
    results: list[BatchItemResult] = []
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, str):
            results.append(BatchItemResult(index=index, task_id=outcome, status="enqueued"))
        else:
            results.append(BatchItemResult(index=index, status="error", error=str(outcome)))
    enqueued = sum(1 for r in results if r.status == "enqueued")
    metrics.SUBMITTED.labels("llm_batch").inc(enqueued)
    return BatchResponse(enqueued=enqueued, failed=len(results) - enqueued, results=results)


@router.post(
    LEGACY_PATH,
    response_model=Envelope,
    summary="The Go original's contract: process one record of a table (llm:process)",
    tags=["compat"],
    responses={400: {}, 401: {}, 403: {}, 413: {}, 429: {}, 503: {}},
)
async def submit_process(
    body: ProcessTaskRequest,
    request: Request,
    key: ApiKey = Depends(require("submit")),  # noqa: B008
) -> Response:
    state = app_state(request)
    if body.table_name not in state.settings.record_table_allowlist:
        raise HTTPException(400, f"table_name {body.table_name!r} is not allowed (SYTQ_RECORD_TABLES)")
    task_id = await state.submitter.submit_process(str(uuid.uuid4()), body.table_name, body.id)
    metrics.SUBMITTED.labels("process").inc()
    return Response(
        b'{"code":200,"message":"Success","data":' + accepted_body(task_id) + b"}", media_type=_JSON
    )
