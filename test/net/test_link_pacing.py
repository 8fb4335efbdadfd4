"""Replay pacing: a burst runs ahead of its original pace by at most the history depth."""

from __future__ import annotations

from fogros_dist.net.pacing import MAX_WAIT_S, SPEEDUP, ReplayPacer

MS = 1_000_000


def _replay(pacer: ReplayPacer, origins: list[int], arrive: float) -> list[float]:
    """Publish times of ``origins`` that all arrive at ``arrive``, each waiting as it is told."""
    now = arrive
    times = []
    for origin in origins:
        now += pacer.wait(origin, now)
        pacer.published(origin, now)
        times.append(now)
    return times


def test_a_burst_goes_depth_at_once_then_at_speedup_times_the_original_pace() -> None:
    pacer = ReplayPacer(depth=10)
    # 150 messages taken 20 ms apart during an outage, all arriving at once when it ends.
    times = _replay(pacer, [i * 20 * MS for i in range(150)], arrive=5.0)
    assert times[:10] == [5.0] * 10
    # Never more than 10 (the depth) within a quarter of the time they originally took.
    span = 10 * 0.020 / SPEEDUP
    assert all(times[i] - times[i - 10] >= span - 1e-9 for i in range(10, 150))
    assert abs(times[-1] - (5.0 + 14 * span)) < 1e-6  # 3 s of messages caught up in 0.7 s


def test_messages_in_their_original_pace_never_wait() -> None:
    pacer = ReplayPacer(depth=2)
    now = 0.0
    for i in range(100):
        origin = i * 50 * MS
        now = i * 0.050 + 0.003  # 3 ms of latency each
        assert pacer.wait(origin, now) == 0.0
        pacer.published(origin, now)


def test_forged_or_missing_times_never_stall_a_topic() -> None:
    pacer = ReplayPacer(depth=1)
    pacer.published(0, 0.0)
    assert pacer.wait(10**18, 0.0) == MAX_WAIT_S  # a claim of years: capped
    assert pacer.wait(-(10**18), 0.0) == 0.0  # time going back (a restarted sender)
    assert pacer.wait(None, 0.0) == 0.0  # no attachment: nothing to pace against
