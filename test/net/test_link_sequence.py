"""Sequence numbers: gaps are loss, implausible jumps are resets (never an absurd loss)."""

from __future__ import annotations

from fogros_dist.net.sequence import SLACK, SequenceCheck, SequenceTracker


class Clock:
    """Seconds that the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _stream(tracker: SequenceTracker, clock: Clock, seqs: range, period: float) -> list[SequenceCheck]:
    checks = []
    for seq in seqs:
        checks.append(tracker.observe(seq))
        clock.now += period
    return checks


def test_consecutive_numbers_lose_nothing_and_a_gap_is_counted_exactly() -> None:
    clock = Clock()
    tracker = SequenceTracker(clock=clock)
    assert all(c == SequenceCheck() for c in _stream(tracker, clock, range(1, 101), 0.02))
    assert tracker.observe(106) == SequenceCheck(lost=5)
    assert tracker.last == 106


def test_a_forged_huge_number_is_a_reset_and_the_genuine_stream_carries_on() -> None:
    clock = Clock()
    tracker = SequenceTracker(clock=clock)
    _stream(tracker, clock, range(1, 51), 0.02)
    # The value that made `lost` 4.6e18 on main.
    assert tracker.observe(4_611_686_018_427_387_904) == SequenceCheck(reset=True)
    # The genuine sender's next number goes back: another reset, still no loss.
    assert tracker.observe(51) == SequenceCheck(reset=True)
    assert tracker.observe(52) == SequenceCheck()
    assert tracker.observe(54) == SequenceCheck(lost=1)


def test_a_restarted_sender_counting_from_one_is_a_reset() -> None:
    clock = Clock()
    tracker = SequenceTracker(clock=clock)
    _stream(tracker, clock, range(1, 1001), 0.001)
    assert tracker.observe(1) == SequenceCheck(reset=True)
    assert tracker.observe(1) == SequenceCheck(reset=True)  # a repeat is not a message lost either
    assert tracker.observe(2) == SequenceCheck()


def test_a_long_outage_of_a_fast_topic_is_loss_a_jump_beyond_what_was_possible_is_not() -> None:
    clock = Clock()
    tracker = SequenceTracker(clock=clock)
    _stream(tracker, clock, range(1, 1001), 0.01)  # 100 Hz for 10 s
    clock.now += 12.0  # a 12 s outage: about 1,200 messages never arrive
    assert tracker.observe(1000 + 1201) == SequenceCheck(lost=1200)
    # 10 ms later, a jump of 5,000 cannot be genuine: the topic averages about 100 Hz.
    clock.now += 0.01
    assert tracker.plausible_gap(clock.now) < 5000
    assert tracker.observe(2201 + 5001) == SequenceCheck(reset=True)


def test_small_gaps_count_before_any_rate_is_known() -> None:
    clock = Clock()
    tracker = SequenceTracker(clock=clock)
    tracker.observe(1)
    assert tracker.observe(1 + SLACK + 1) == SequenceCheck(lost=SLACK)
