"""Withdrawing what a bridge declared, on the way down: a failure is logged, never raised, so
closing goes on for every other route (topics in net/bridge.py, services in net/service_bridge.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import zenoh

from fogros_dist.logs import module_logger

__all__ = ["quietly", "undeclare"]

_log = module_logger(__name__)


def undeclare(entity: Any) -> None:
    """Undeclare a Zenoh entity (None: nothing to do)."""
    if entity is None:
        return
    try:
        entity.undeclare()
    except zenoh.ZError as err:  # the session may already be closed: nothing left to withdraw
        _log.debug("undeclare failed: %s", err)


def quietly(action: Callable[[], None], what: str) -> None:
    """Run ``action``; log what failed as ``what`` and carry on."""
    try:
        action()
    except Exception:  # closing must go on for the other routes
        _log.exception("%s failed", what)
