"""Skip a test whose nodes need message packages that the sourced ROS 2 lacks.

Where rclpy imports, the workloads' nodes take the rclpy graph adapter (``graph="auto"``), and
rclpy can only speak the message packages that ROS 2 installation has built; without rclpy they
take the DDS adapter, which carries its own definitions. So a ROS 2 without e.g. ``nav_msgs`` is
a property of the machine, not a failure of the code: the test says which package to build.
Importable as ``ros_packages`` from any test (``test/`` is on sys.path).
"""

from __future__ import annotations

import importlib.util

import pytest

__all__ = ["missing_message_packages", "needs_message_packages"]


def missing_message_packages(*packages: str) -> list[str]:
    """Those of ``packages`` the sourced ROS 2 lacks; none when rclpy is absent (DDS adapter)."""
    if importlib.util.find_spec("rclpy") is None:
        return []
    return [name for name in packages if importlib.util.find_spec(name) is None]


def needs_message_packages(*packages: str) -> pytest.MarkDecorator:
    """A skip mark for a test (or ``pytestmark``) whose nodes publish ``packages``' types."""
    missing = missing_message_packages(*packages)
    reason = f"the sourced ROS 2 lacks {', '.join(missing)}: build it into that installation"
    return pytest.mark.skipif(bool(missing), reason=reason)
