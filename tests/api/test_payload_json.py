"""The llm:chat payload the API writes directly is the payload model's own JSON, byte for byte."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.models import ChatTaskRequest
from api.routes_submit import chat_payload_json
from sytq.tasks import LLMChatPayload, LLMParameters, build_messages

PARAMETER_NAMES = ("temperature", "max_tokens", "top_p", "stop", "response_format")


def model_json(req: ChatTaskRequest, default_model: str, client_id: str) -> bytes:
    """What the payload model writes for the request (the reference)."""
    payload = LLMChatPayload(
        model=req.model or default_model,
        messages=build_messages(req.prompt, req.messages, req.system),
        parameters=LLMParameters(**{name: getattr(req, name) for name in PARAMETER_NAMES}),
        callback_url=req.callback_url,
        metadata=req.metadata or {},
        client_id=client_id,
    )
    return payload.model_dump_json(exclude_none=True).encode()


def payload_of(body: dict[str, object]) -> bytes:
    req = ChatTaskRequest.model_validate(body)
    return chat_payload_json(req, "deepseek-chat", "key-1", req.text_size())


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "hi"},
        {"prompt": 'hé \u2028 \x00 "q" \\', "system": "be brief", "model": "m"},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]},
        {"prompt": "p", "temperature": 1, "stop": ["x"], "response_format": {"type": "json_object"}},
        {"prompt": "p", "metadata": {"a": None, "b": [1, 2.5, 1e16], "c": {"d": "é"}}, "max_tokens": 5},
        {"prompt": "p", "callback_url": "https://example.com/hook", "top_p": 0.5},
    ],
)
def test_payload_equals_the_models_json(body: dict[str, object]) -> None:
    req = ChatTaskRequest.model_validate(body)
    assert payload_of(body) == model_json(req, "deepseek-chat", "key-1")
    LLMChatPayload.model_validate_json(payload_of(body))  # and the worker can read it


@settings(max_examples=60, deadline=None)
@given(
    prompt=st.text(min_size=1, max_size=40),
    system=st.none() | st.text(max_size=20),
    temperature=st.none() | st.floats(0, 2),
    metadata=st.none()
    | st.dictionaries(st.text(max_size=5), st.none() | st.integers() | st.text(max_size=5)),
)
def test_payload_equals_the_models_json_for_any_text(
    prompt: str, system: str | None, temperature: float | None, metadata: dict[str, object] | None
) -> None:
    body: dict[str, object] = {"prompt": prompt, "system": system, "temperature": temperature}
    if metadata is not None:
        body["metadata"] = metadata
    req = ChatTaskRequest.model_validate(body)
    assert payload_of(body) == model_json(req, "deepseek-chat", "key-1")


def test_rules_the_request_does_not_share_are_still_checked() -> None:
    with pytest.raises(ValueError, match="at least one user message"):
        payload_of({"messages": [{"role": "assistant", "content": "a"}]})
    with pytest.raises(ValueError, match="response_format"):
        payload_of({"prompt": "p", "response_format": {"type": "xml"}})
    with pytest.raises(ValueError, match="at most 1000 messages"):
        payload_of({"system": "s", "messages": [{"role": "user", "content": "u"}] * 1000})


@settings(max_examples=80, deadline=None)
@given(
    prompt=st.text(min_size=1, max_size=40),
    system=st.none() | st.text(max_size=20),
    model=st.none() | st.text(min_size=1, max_size=10),
    callback_url=st.none() | st.text(min_size=1, max_size=20),
    client_id=st.text(min_size=1, max_size=10),
)
def test_a_prompt_without_parameters_or_metadata_is_the_models_json(
    prompt: str, system: str | None, model: str | None, callback_url: str | None, client_id: str
) -> None:
    """The path most submits take (written as text, not through the serializer)."""
    req = ChatTaskRequest.model_validate(
        {"prompt": prompt, "system": system, "model": model, "callback_url": callback_url, "metadata": {}}
    )
    written = chat_payload_json(req, "deepseek-chat", client_id, req.text_size())
    assert written == model_json(req, "deepseek-chat", client_id)
