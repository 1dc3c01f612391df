"""Property-based fuzzing of our OpenAPI schema over real HTTP, with authentication on.

Stateless: every operation, as a tenant with a valid key: no input may cause a 5xx.
Stateful: create → get → cancel → retry chained by OpenAPI links, each step sent with one of two
tenants' keys: a step on the other tenant's task must answer 404, on its own task never 404.
"""

from __future__ import annotations

import copy
import re
from typing import Any, ClassVar

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CheckContext, not_a_server_error

from api.app import create_app
from sytq.settings import Settings
from tests.api.helpers import bearer, key_entry
from tests.harness.api_fixtures import RunningApi

pytestmark = pytest.mark.slow  # end to end: seconds each; left out of `make unit`

TENANTS = {"tenant-a": "a-secret", "tenant-b": "b-secret"}
KEYS = ",".join(key_entry(name, secret, "submit|read") for name, secret in TENANTS.items())

# Building the app opens no connection; it only yields the schema to generate cases from.
_SCHEMA_APP = create_app(
    Settings(redis_url="redis://127.0.0.1:1/0", database_url="sqlite://", api_keys=KEYS, id_secret="s")
)
_OPENAPI = _SCHEMA_APP.openapi()
schema = schemathesis.openapi.from_dict(_OPENAPI)

# The one 5xx allowed: the Go original's routes answer an unknown task or queue as it did, a 500
# carrying asynq's error (docs/api.md); anything else would be a crash.
_ORIGINALS_500 = re.compile(
    rb'\{"code":500,"message":"Failed to (get task info|list tasks): asynq: '
    rb'(task not found|queue not found|queue name must contain one or more characters)"\}'
)


@schemathesis.check
def not_a_server_error_but_the_originals(
    ctx: CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    if response.status_code == 500 and _ORIGINALS_500.fullmatch(response.content):
        return None
    result: bool | None = not_a_server_error(ctx, response, case)
    return result


_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)


@pytest.fixture
def keyed_api(start_api: Any) -> RunningApi:
    api: RunningApi = start_api(api_keys=KEYS)
    return api


@schema.parametrize()
@_SETTINGS
def test_no_server_errors(case: schemathesis.Case, keyed_api: RunningApi) -> None:
    case.call_and_validate(
        base_url=keyed_api.url,
        headers=bearer("a-secret"),
        checks=[not_a_server_error_but_the_originals],
        timeout=10,
    )


SUBMIT, TASK = "/api/v1/tasks/llm", "/api/v1/tasks/{task_id}"
_STEPS = {"get": (TASK, "get"), "cancel": (f"{TASK}/cancel", "post"), "retry": (f"{TASK}/retry", "post")}


def _linked_schema() -> dict[str, Any]:
    """The task lifecycle operations, with links from a submit's task_id to each of them."""
    document = copy.deepcopy(_OPENAPI)
    keep = {SUBMIT, *(path for path, _ in _STEPS.values())}
    document["paths"] = {path: ops for path, ops in document["paths"].items() if path in keep}
    document["paths"][SUBMIT]["post"]["responses"]["200"]["links"] = {
        f"{step.title()}Task": {
            "operationId": document["paths"][path][method]["operationId"],
            "parameters": {"task_id": "$response.body#/task_id"},
        }
        for step, (path, method) in _STEPS.items()
    }
    return document


class _TwoTenants(schemathesis.openapi.from_dict(_linked_schema()).as_state_machine()):  # type: ignore[misc]
    """Each step alternates between the tenants' keys and checks what isolation promises."""

    base_url: ClassVar[str] = ""
    checked: ClassVar[dict[str, int]] = {"own": 0, "foreign": 0}

    def setup(self) -> None:
        self.calls = 0
        self.owner_of: dict[str, str] = {}

    def before_call(self, case: schemathesis.Case) -> None:
        # The stateless test fuzzes submit bodies; here a submit must succeed for the chain to go on
        # (a random queue or callback_url is refused), so it sends a valid body, delayed or not.
        if case.path == SUBMIT:
            generated = case.body if isinstance(case.body, dict) else {}
            delay = generated.get("delay_seconds")
            case.body = {
                "prompt": "lifecycle",
                **({"delay_seconds": delay} if isinstance(delay, int) and 0 <= delay <= 3600 else {}),
            }

    def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
        self.calls += 1
        self.tenant = list(TENANTS)[self.calls % 2]
        return {"base_url": self.base_url, "headers": bearer(TENANTS[self.tenant]), "timeout": 10}

    def after_call(self, response: Any, case: schemathesis.Case) -> None:
        if case.path == SUBMIT and response.status_code == 200:
            self.owner_of[response.json()["task_id"]] = self.tenant

    def validate_response(self, response: Any, case: schemathesis.Case, **kwargs: Any) -> None:
        case.validate_response(response, checks=[not_a_server_error], transport_kwargs=kwargs)
        task_id = (case.path_parameters or {}).get("task_id")
        owner = self.owner_of.get(task_id) if task_id else None
        if owner is None:
            return
        if owner != self.tenant:
            assert response.status_code == 404, f"{self.tenant} reached {owner}'s task: {response.text}"
            self.checked["foreign"] += 1
        else:
            assert response.status_code in (200, 409), f"{owner}'s own task: {response.text}"
            self.checked["own"] += 1


def test_lifecycle_across_two_tenants(keyed_api: RunningApi) -> None:
    _TwoTenants.base_url = keyed_api.url
    _TwoTenants.run(
        settings=settings(
            max_examples=20,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    # The links were followed: steps on own and on foreign tasks both happened and were checked.
    assert _TwoTenants.checked["own"] > 0 and _TwoTenants.checked["foreign"] > 0, _TwoTenants.checked
