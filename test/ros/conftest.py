"""Fixtures for the ROS layer's tests."""

from __future__ import annotations

import pytest
from ros_test_helpers import Waiter
from ros_test_helpers import wait_for as _wait_for


@pytest.fixture
def wait_for() -> Waiter:
    """``wait_for(condition, timeout) -> bool``: wait until a condition holds."""
    return _wait_for
