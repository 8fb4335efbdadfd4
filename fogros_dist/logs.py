"""Module loggers that reach the host program's handlers wherever fogros_dist runs.

ROS 2's ``launch`` installs its own logger class on import and makes every logger created after
that non-propagating, so a fogros_dist module imported later (inside ``ros2 launch``, or a test
process that imported ``launch`` first) would log into nothing: no bridge log line, no pytest
capture. Every module takes its logger from here instead of ``logging.getLogger``.
"""

from __future__ import annotations

import logging

__all__ = ["module_logger"]


def module_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)``, propagating to the root's handlers whatever launch did."""
    log = logging.getLogger(name)
    log.propagate = True
    return log
