"""Submitting tasks: the seed contract and the batch endpoint (the Go original's is in routes_legacy)."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Iterable
from typing import TypeVar

import pydantic_core
from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from api import metrics
from api.auth import ApiKey
from api.errors import FieldError
from api.fast_lane import Headers, Pending
from api.models import (
    BatchRequest,
    BatchResponse,
    ChatTaskRequest,
    TaskAccepted,
)
from api.responses import ReadyResponse
from api.security import BEARER_SECURITY, authenticate, authorize, charge
from api.state import AppState, app_state, header_value, raw_header
from api.submitter import AlreadySubmitted, ChatSubmission
from sytq.callbacks import UnsafeCallbackURL, check_callback_url
from sytq.idempotency import MAX_KEY_LENGTH, IdempotencyKeyReused, fingerprint
from sytq.queue import TaskIdConflictError, new_task_id
from sytq.tasks import DEFAULT_QUEUE, ChatMessage, LLMChatPayload, LLMParameters, build_messages

router = APIRouter()
BodyT = TypeVar("BodyT", bound=BaseModel)
_SINGLE_SUBMITTED = metrics.SUBMITTED.labels("llm")
_BATCH_SUBMITTED = metrics.SUBMITTED.labels("llm_batch")

SUBMIT_PATH = "/api/v1/tasks/llm"
BATCH_PATH = "/api/v1/tasks/llm:batch"
JSON_PATHS = frozenset({SUBMIT_PATH, BATCH_PATH})
# Bodies the hot-path routes parse themselves; api.openapi documents them.
SELF_PARSED_BODIES: tuple[type[BaseModel], ...] = (ChatTaskRequest, BatchRequest)

_JSON = "application/json"
_JSON_TYPE = _JSON.encode()
# A callback host that takes longer than this to resolve is refused rather than holding the request.
CALLBACK_CHECK_SECONDS = 3.0
CALLBACK_CHECKS_AT_ONCE = 16  # a batch with many distinct hosts resolves them in parallel


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
    gate = asyncio.Semaphore(CALLBACK_CHECKS_AT_ONCE)

    async def check(url: str, loc: list[str | int]) -> None:
        async with gate:
            try:
                await asyncio.wait_for(
                    asyncio.to_thread(check_callback_url, url, state.allow_nets), CALLBACK_CHECK_SECONDS
                )
            except UnsafeCallbackURL as exc:
                raise _unprocessable(loc, str(exc)) from exc
            except TimeoutError as exc:
                raise _unprocessable(loc, "callback_url host did not resolve in time") from exc

    if len(seen) == 1:
        await check(*next(iter(seen.items())))
    else:
        await asyncio.gather(*(check(url, loc) for url, loc in seen.items()))


def _submission(
    state: AppState, req: ChatTaskRequest, key: ApiKey, task_id: str, loc: list[str | int]
) -> ChatSubmission:
    settings = state.settings
    text_size = req.text_size()
    if text_size > settings.api_max_prompt_chars:
        raise _unprocessable([*loc, "prompt"], f"prompt text over {settings.api_max_prompt_chars} characters")
    try:
        payload_json = chat_payload_json(req, settings.llm_default_model, key.name, text_size)
    except ValueError as exc:
        raise _unprocessable(loc, _first_line(exc)) from exc
    queue = req.queue or DEFAULT_QUEUE
    if queue not in state.served_queues and not settings.dynamic_queues:
        raise _unprocessable(
            [*loc, "queue"],
            f"queue {queue!r} is not served: SYTQ_QUEUES names {sorted(state.served_queues)}"
            " (SYTQ_DYNAMIC_QUEUES=true accepts any)",
        )
    return ChatSubmission(
        task_id,
        payload_json,
        queue,
        settings.task_max_retry if req.max_retry is None else req.max_retry,
        req.timeout_seconds or settings.task_timeout_seconds,
        settings.task_retention_seconds,
        req.process_at,
        float(req.delay_seconds) if req.delay_seconds else None,
    )


# ChatMessage.content's own limit: a prompt within it needs no ChatMessage built to be checked.
_CONTENT_LIMIT: int = next(
    m.max_length for m in ChatMessage.model_fields["content"].metadata if hasattr(m, "max_length")
)
_MESSAGES_LIMIT: int = next(
    m.max_length for m in LLMChatPayload.model_fields["messages"].metadata if hasattr(m, "max_length")
)


def chat_payload_json(req: ChatTaskRequest, default_model: str, client_id: str, text_size: int) -> bytes:
    """The ``llm:chat`` payload, serialized once: byte for byte what
    ``LLMChatPayload.model_dump_json(exclude_none=True)`` writes, built from plain values.

    ChatTaskRequest already enforces the payload's field limits, so building the payload models
    again would only re-check them (it cost more than the enqueue). Only the rules the request
    does not share are checked here: the parameters' own validators, a user turn in explicit
    messages, and the payload's message count once a system turn is added.
    """
    has_parameters = not (
        req.temperature is None
        and req.max_tokens is None
        and req.top_p is None
        and req.stop is None
        and req.response_format is None
    )
    one_prompt = req.messages is None and req.prompt is not None and text_size <= _CONTENT_LIMIT
    if one_prompt and not has_parameters and not req.metadata:
        plain = _plain_chat_payload_json(req, req.prompt or "", default_model, client_id)
        if plain is not None:
            return plain
    turns: list[dict[str, str]] | list[ChatMessage]
    if one_prompt and req.prompt is not None:
        turns = [{"role": "user", "content": req.prompt}]
        if req.system:
            turns.insert(0, {"role": "system", "content": req.system})
    else:
        turns = build_messages(req.prompt, req.messages, req.system)
        if req.messages is not None and not any(m.role == "user" for m in turns):
            raise ValueError("messages must contain at least one user message")
        if len(turns) > _MESSAGES_LIMIT:
            raise ValueError(f"at most {_MESSAGES_LIMIT} messages, system included")
    document: dict[str, object] = {
        "model": req.model or default_model,
        "messages": turns,
        "parameters": LLMParameters(
            temperature=req.temperature,
            max_tokens=req.max_tokens,
            top_p=req.top_p,
            stop=req.stop,
            response_format=req.response_format,
        )
        if has_parameters
        else {},
    }
    if req.callback_url is not None:
        document["callback_url"] = req.callback_url
    document["metadata"] = req.metadata or {}
    document["client_id"] = client_id
    return pydantic_core.to_json(document, exclude_none=True)


# json.dumps(str, ensure_ascii=False) without its dispatch: it escapes exactly what pydantic's
# serializer escapes (quote, backslash, control characters) and writes the rest as UTF-8.
_json_text: Callable[[str], str] = json.encoder.encode_basestring


def _plain_chat_payload_json(
    req: ChatTaskRequest, prompt: str, default_model: str, client_id: str
) -> bytes | None:
    """``chat_payload_json`` for a prompt with no parameters and no metadata (most submits), written
    as text; None for text that is not UTF-8 (a lone surrogate), which the general path reports."""
    user = '{"role":"user","content":' + _json_text(prompt) + "}"
    turns = '{"role":"system","content":' + _json_text(req.system) + "}," + user if req.system else user
    callback = ',"callback_url":' + _json_text(req.callback_url) if req.callback_url is not None else ""
    model = _json_text(req.model or default_model)
    text = (
        f'{{"model":{model},"messages":[{turns}],"parameters":{{}}{callback},'
        f'"metadata":{{}},"client_id":{_json_text(client_id)}}}'
    )
    try:
        return text.encode()
    except UnicodeEncodeError:
        return None


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
    responses={401: {}, 403: {}, 413: {}, 422: {}, 429: {}, 503: {}},
    # The hot path parses its own body and key (dependency injection costs more than the
    # rest of the request); this documents what the signature no longer declares.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChatTaskRequest"}}},
        },
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "maxLength": MAX_KEY_LENGTH},
                "description": "Repeat a submit safely: the same key returns the same task id",
            }
        ],
        "security": BEARER_SECURITY,
    },
)
async def submit_llm(request: Request) -> Response:
    state = app_state(request)
    key = await authorize(state, raw_header(request, b"authorization"), "submit")
    raw = await request.body()
    body = parse_body(ChatTaskRequest, raw)
    idempotency_key = raw_header(request, b"idempotency-key")
    if idempotency_key and len(idempotency_key) > MAX_KEY_LENGTH:
        raise _unprocessable(["header", "Idempotency-Key"], f"at most {MAX_KEY_LENGTH} characters")
    # Everything that can refuse the request runs before the idempotency key is claimed, so a
    # refused submit does not use the key up.
    item = _submission(state, body, key, new_task_id(), ["body"])
    if body.callback_url:
        await _check_callbacks(state, [(["body", "callback_url"], body.callback_url)])
    fresh_claim = False
    if idempotency_key:
        try:
            claim = await state.idempotency.claim(key.name, idempotency_key, fingerprint(raw))
        except IdempotencyKeyReused as exc:
            raise HTTPException(422, str(exc)) from exc
        item = item._replace(task_id=claim.task_id)
        fresh_claim = claim.fresh
    try:
        # The submitter's id is the one to return (a resource-mode submitter names its own).
        task_id = await state.submitter.submit_chat(item)
    except AlreadySubmitted as exc:
        task_id = exc.task_id  # the same Idempotency-Key again: same answer, nothing enqueued twice
    except BaseException:
        if idempotency_key and fresh_claim:
            await _release_quietly(state, key.name, idempotency_key)
        raise
    return _accepted(task_id)


def submit_llm_now(state: AppState, headers: Headers, raw: bytes) -> Pending | None:
    """``submit_llm`` without awaiting (the API's direct path): the same answer, or None where the
    route has to await before its enqueue (a rate limit, an idempotency claim, a callback host's
    address) or to answer a refusal through the app's handlers (they are raised here)."""
    if state.limiter.enabled or header_value(headers, b"idempotency-key"):
        return None
    key = authenticate(state, header_value(headers, b"authorization"))
    if not key.allows("submit"):
        return None
    body = parse_body(ChatTaskRequest, raw)
    if body.callback_url:
        return None
    item = _submission(state, body, key, new_task_id(), ["body"])
    return Pending(state.submitter.submit_chat_soon(item), functools.partial(_enqueued_answer, item.task_id))


def _enqueued_answer(task_id: str, enqueued: asyncio.Future[str]) -> Response:
    """``submit_llm``'s answer once ``submit_chat_soon`` is done; raises what the route would."""
    try:
        return _accepted(enqueued.result())
    except AlreadySubmitted as exc:
        return _accepted(exc.task_id)
    except TaskIdConflictError:
        return _accepted(task_id)


def _accepted(task_id: str) -> Response:
    _SINGLE_SUBMITTED.inc()
    return ReadyResponse(accepted_body(task_id), _JSON_TYPE)


def parse_body(model: type[BodyT], raw: bytes) -> BodyT:
    """Validate a JSON body, failing with the same 422 shape FastAPI gives declared bodies."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{"loc": ("body", *e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        ) from None


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
    responses={401: {}, 403: {}, 413: {}, 422: {}, 429: {}, 503: {}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchRequest"}}},
        },
        "security": BEARER_SECURITY,
    },
)
async def submit_llm_batch(request: Request) -> Response:
    state = app_state(request)
    key = await authorize(state, raw_header(request, b"authorization"), "submit")
    body = parse_body(BatchRequest, await request.body())
    cap = state.settings.api_max_batch
    if len(body.tasks) > cap:
        raise _unprocessable(["body", "tasks"], f"at most {cap} tasks per batch, got {len(body.tasks)}")
    limit = state.settings.api_rate_limit_per_minute
    if 0 < limit < len(body.tasks):
        raise _unprocessable(
            ["body", "tasks"],
            f"{len(body.tasks)} tasks exceed the rate limit of {limit}/minute; split the batch",
        )
    # Each task counts against the rate limit (the request itself was counted as the first).
    await charge(state, key, len(body.tasks) - 1)
    items = [
        _submission(state, req, key, new_task_id(), ["body", "tasks", i]) for i, req in enumerate(body.tasks)
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
    enqueued = sum(1 for outcome in outcomes if isinstance(outcome, str))
    _BATCH_SUBMITTED.inc(enqueued)
    return Response(batch_body(outcomes, enqueued), media_type=_JSON)


# json.dumps(str) without its dispatch: the same C function writes the same bytes.
_json_string: Callable[[str], str] = json.encoder.encode_basestring_ascii


def batch_body(outcomes: list[str | Exception], enqueued: int) -> bytes:
    """BatchResponse as JSON, written directly: for 1,000 items the generic encoder costs more
    than enqueuing them."""
    parts = [
        f'{{"index":{i},"task_id":{_json_string(o)},"status":"enqueued","error":null}}'
        if isinstance(o, str)
        else f'{{"index":{i},"task_id":null,"status":"error","error":{_json_string(str(o))}}}'
        for i, o in enumerate(outcomes)
    ]
    head = f'{{"enqueued":{enqueued},"failed":{len(outcomes) - enqueued},"results":['
    return (head + ",".join(parts) + "]}").encode()
