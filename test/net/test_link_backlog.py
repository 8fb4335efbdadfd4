"""Bounded backlogs: reliable topics refuse the newest, best-effort topics evict the oldest."""

from __future__ import annotations

import pytest

from fogros_dist.errors import ConfigError
from fogros_dist.net.backlog import Backlog, BacklogLimits
from fogros_dist.net.sender import BACKLOG_BYTES, RELIABLE_BACKLOG_MESSAGES, backlog_limits


def _drain(backlog: Backlog[int]) -> list[int]:
    out = []
    while (item := backlog.pop()) is not None:
        out.append(item)
    return out


def test_reliable_keeps_the_oldest_and_refuses_the_newest() -> None:
    backlog: Backlog[int] = Backlog(BacklogLimits(max_messages=3, max_bytes=1000, evict_oldest=False))
    assert [backlog.push(i, 10) for i in range(5)] == [0, 0, 0, 1, 1]
    assert _drain(backlog) == [0, 1, 2]


def test_best_effort_keeps_the_freshest() -> None:
    backlog: Backlog[int] = Backlog(BacklogLimits(max_messages=3, max_bytes=1000, evict_oldest=True))
    assert [backlog.push(i, 10) for i in range(5)] == [0, 0, 0, 1, 1]
    assert _drain(backlog) == [2, 3, 4]


def test_the_byte_limit_holds_but_one_large_message_fits_an_empty_backlog() -> None:
    fresh: Backlog[int] = Backlog(BacklogLimits(max_messages=100, max_bytes=100, evict_oldest=True))
    assert fresh.push(1, 60) == 0
    assert fresh.push(2, 60) == 1  # evicts 1
    assert fresh.push(3, 500) == 1  # larger than the limit: evicts 2, goes in alone
    assert (len(fresh), fresh.nbytes) == (1, 500)
    assert _drain(fresh) == [3]
    kept: Backlog[int] = Backlog(BacklogLimits(max_messages=100, max_bytes=100, evict_oldest=False))
    assert [kept.push(i, 60) for i in range(3)] == [0, 1, 1]
    assert kept.nbytes == 60


def test_limits_follow_the_topic_qos() -> None:
    reliable = backlog_limits(reliable=True, depth=10)
    assert (reliable.max_messages, reliable.max_bytes, reliable.evict_oldest) == (
        RELIABLE_BACKLOG_MESSAGES,
        BACKLOG_BYTES,
        False,
    )
    assert backlog_limits(reliable=True, depth=500).max_messages == 500
    best_effort = backlog_limits(reliable=False, depth=5)
    assert (best_effort.max_messages, best_effort.evict_oldest) == (5, True)
    with pytest.raises(ConfigError, match="too small"):
        BacklogLimits(max_messages=0, max_bytes=1, evict_oldest=True)
