"""Strict JSON values: finite numbers, bounded nesting and size, so every supported database stores them.

Python's JSON readers (pydantic's included) accept ``NaN``, ``Infinity`` and overflowing numbers
such as ``1e400``; MySQL and MariaDB refuse the JSON text they turn back into. MariaDB's JSON_VALID
(the CHECK on its JSON columns) refuses documents nested 32 levels deep or more; MySQL stops at 100.
Free-form values (``metadata``, ``response_format``) are checked here at every entrance: the API,
LLMTask specs and queue payloads read by the worker.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import pydantic_core
from pydantic import AfterValidator

# Levels of arrays/objects in one value, the value itself counted: a field's document gains a
# level or two where it is stored (parameters wrap response_format), still far below MariaDB's 31.
MAX_DEPTH = 16
MAX_BYTES = 64 * 1024  # JSON text of one free-form value (a callback body carries metadata whole)


def json_value_problem(value: Any, *, max_depth: int = MAX_DEPTH, max_bytes: int = MAX_BYTES) -> str | None:
    """Why ``value`` cannot be stored as strict JSON, naming where inside it; None when it can."""
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return f"{path or 'value'}: {_number_name(item)} is not allowed, only finite numbers"
        elif isinstance(item, dict | list):
            if depth > max_depth:
                return f"{path or 'value'}: nested deeper than {max_depth} levels"
            if isinstance(item, dict):
                stack.extend((v, f"{path}.{k}" if path else str(k), depth + 1) for k, v in item.items())
            else:
                stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(item))
    if isinstance(value, dict | list) and value:
        size = len(pydantic_core.to_json(value))
        if size > max_bytes:
            return f"{size} bytes of JSON, more than {max_bytes}"
    return None


def check_json_value(value: Any) -> Any:
    """``value`` unchanged, or ValueError saying what makes it unstorable (a pydantic validator)."""
    problem = json_value_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _number_name(number: float) -> str:
    if math.isnan(number):
        return "NaN"
    # 1e400 and the like arrive as Infinity: the reader overflowed them.
    return "Infinity (or a number too large)" if number > 0 else "-Infinity (or a number too large)"


# A free-form JSON object field that every supported database can store.
JSONObject = Annotated[dict[str, Any], AfterValidator(check_json_value)]
