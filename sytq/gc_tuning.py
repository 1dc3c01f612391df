"""Cyclic garbage collection for the long-running services (API, worker, controller).

What a service builds at start-up (modules, settings, pools, validators) lives as long as the
process; full collections would walk it every time. Freezing it takes it out of their view, and a
busy service can make collections rarer still (each service measured its own thresholds)."""

from __future__ import annotations

import gc


def freeze_startup_objects(thresholds: tuple[int, int, int] | None = None) -> None:
    """Collect what start-up left behind, freeze the rest, and apply ``thresholds`` if given."""
    gc.collect()
    gc.freeze()
    if thresholds is not None:
        gc.set_threshold(*thresholds)
