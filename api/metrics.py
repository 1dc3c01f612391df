"""Prometheus metrics of the ingress (served on /metrics with everything else in the registry)."""

from __future__ import annotations

from prometheus_client import Counter

SUBMITTED = Counter("sytq_api_tasks_submitted", "Tasks accepted by the HTTP API", ["endpoint"])
REJECTED = Counter("sytq_api_requests_rejected", "Requests refused by the HTTP API", ["status"])
