"""The one strict-JSON check, and the entrances that use it besides the API and the worker."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sytq.k8s_resources import payload_from_spec
from sytq.settings import Settings
from sytq.strict_json import MAX_BYTES, MAX_DEPTH, json_value_problem
from sytq.tasks import LLMChatPayload, salvage_callback_url


def nested(levels: int) -> list[object]:
    value: list[object] = []
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"a": [1, {"b": float("nan")}]}, "a[1].b: NaN is not allowed"),
        ({"a": float("inf")}, "a: Infinity"),
        ([float("-inf")], "[0]: -Infinity"),
        ({"a": nested(MAX_DEPTH)}, f"a{'[0]' * (MAX_DEPTH - 1)}: nested deeper than {MAX_DEPTH} levels"),
        ({"s": "x" * MAX_BYTES}, f"more than {MAX_BYTES}"),
    ],
)
def test_problems_name_where_they_are(value: object, problem: str) -> None:
    found = json_value_problem(value)
    assert found is not None and problem in found


def test_values_within_the_caps_pass() -> None:
    assert json_value_problem({"a": nested(MAX_DEPTH - 1), "f": 1.5, "n": None, "s": "é" * 100}) is None
    assert json_value_problem(nested(MAX_DEPTH)) is None
    assert json_value_problem(1e308) is None


def test_llmtask_spec_with_poison_response_format_is_refused() -> None:
    spec = {"model": "m", "prompt": "p", "parameters": {"responseFormat": {"type": "text", "x": nested(40)}}}
    with pytest.raises(ValueError, match=f"deeper than {MAX_DEPTH} levels"):
        payload_from_spec(spec, namespace="ns", name="t", default_model="m")
    spec["parameters"] = {"responseFormat": {"type": "text", "x": float("nan")}}
    with pytest.raises(ValueError, match="x: NaN"):
        payload_from_spec(spec, namespace="ns", name="t", default_model="m")
    spec["parameters"] = {"temperature": float("nan")}
    with pytest.raises(ValueError, match="finite number"):
        payload_from_spec(spec, namespace="ns", name="t", default_model="m")


def test_payload_reader_refuses_poison_and_salvages_its_callback_url() -> None:
    raw = b'{"model":"m","messages":[{"role":"user","content":"u"}],"callback_url":"https://h/cb","metadata":{"x":NaN}}'
    with pytest.raises(ValueError, match="x: NaN"):
        LLMChatPayload.model_validate_json(raw)
    assert salvage_callback_url(raw) == "https://h/cb"
    assert salvage_callback_url(b"[" * 100_000) is None
    assert salvage_callback_url(b'{"callback_url": 5}') is None


def test_body_cap_stays_under_the_database_packet_limit() -> None:
    assert Settings(api_max_body_bytes=8 * 1024 * 1024).api_max_body_bytes == 8 * 1024 * 1024
    with pytest.raises(ValidationError, match="api_max_body_bytes"):
        Settings(api_max_body_bytes=64 * 1024 * 1024)
