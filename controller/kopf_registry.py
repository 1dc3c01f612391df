"""Adjustments to kopf's handler registry that kopf's decorators cannot express."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import kopf


def spawn_without_finalizer(fn: Callable[..., Any]) -> None:
    """Let the daemon or timer ``fn`` run without kopf's finalizer on its objects.

    kopf puts its finalizer on every object a daemon or timer runs for, so that it can stop the
    handler before the object goes. Ours need none (they end by themselves once their object is
    gone), and the finalizer would outlive the controller: a ``helm uninstall`` deletes the
    controller together with the chart's objects, which would then wait for it forever. kopf has
    no decorator option for this, so the registered handler is replaced by a copy that says so.
    """
    spawning = kopf.get_default_registry()._spawning
    spawning._handlers = [
        dataclasses.replace(handler, requires_finalizer=False) if handler.fn is fn else handler
        for handler in spawning._handlers
    ]
