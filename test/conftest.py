"""Shared pytest fixtures. Each layer keeps its fixtures in its own clearly named section."""

from __future__ import annotations

import fcntl
import os
import random
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# ---------------------------------------------------------------------------------------------
# ROS / DDS (fogros_dist.ros): loopback-only DDS and collision-free domain ids
# ---------------------------------------------------------------------------------------------

# Test domains for robots: clear of the ROS default (0) and typical lab domains, and below the
# range Local machines claim host-wide (120..232), which the robots' domains must never meet.
_TEST_DOMAINS = range(30, 120)
_DOMAIN_LOCK_DIR = Path(tempfile.gettempdir()) / "fogros_dist_test_domains"


@pytest.fixture(scope="session", autouse=True)
def dds_loopback_only() -> Iterator[None]:
    """Confine every DDS participant of the session (and of its child processes) to ``lo``.

    Workplace rule: DDS in tests never multicasts on a real interface. This runs before any test
    creates a participant, so Cyclone (pip or rmw_cyclonedds_cpp) reads the loopback config.
    The RMW is pinned to Cyclone because another RMW would ignore that config.
    """
    from fogros_dist.ros.cyclone_config import apply_loopback_config

    previous = apply_loopback_config(environ={"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"})
    yield
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


class DomainIds:
    """Hands out DDS domain ids no other test, worker or concurrent pytest run holds.

    Each id is held with an exclusive lock on a file in the temp directory until the test ends,
    so parallel tests (pytest-xdist, or two people's runs on one host) never share a domain.
    """

    def __init__(self) -> None:
        _DOMAIN_LOCK_DIR.mkdir(exist_ok=True)
        self._held: list[int] = []  # file descriptors

    def __call__(self) -> int:
        candidates = list(_TEST_DOMAINS)
        # Start at a random place so concurrent runs rarely contend for the same lock file.
        start = random.randrange(len(candidates))
        for domain in candidates[start:] + candidates[:start]:
            fd = os.open(_DOMAIN_LOCK_DIR / f"{domain}.lock", os.O_CREAT | os.O_RDWR, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self._held.append(fd)
            return domain
        msg = f"all test DDS domains {_TEST_DOMAINS.start}..{_TEST_DOMAINS.stop - 1} are in use"
        raise RuntimeError(msg)

    def release(self) -> None:
        for fd in self._held:
            os.close(fd)  # closing drops the lock
        self._held.clear()


@pytest.fixture
def new_domain_id() -> Iterator[Callable[[], int]]:
    """A function returning a fresh, exclusively held DDS domain id each call (for tests that
    need several domains)."""
    ids = DomainIds()
    yield ids
    ids.release()


@pytest.fixture
def ros_domain_id(new_domain_id: Callable[[], int]) -> int:
    """One DDS domain id that only this test uses."""
    return new_domain_id()


@pytest.fixture
def robot_domain(new_domain_id: Callable[[], int]) -> int:
    """The robot's ROS domain in end-to-end tests: like ``ros_domain_id``, a domain no other test
    uses."""
    return new_domain_id()
