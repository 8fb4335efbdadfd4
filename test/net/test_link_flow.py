"""Flow windows: at most about a second of the measured delivery rate in flight."""

from __future__ import annotations

from fogros_dist.net.flow import FREE_BYTES, LAG_LIMIT_S, MAX_LAG_S, FlowWindow

KB = 1024


def test_without_reports_nothing_is_held_back() -> None:
    window = FlowWindow(expire_s=30)
    for seq in range(1, 1000):
        window.sent(seq, 100 * KB, now=0.0)
        assert window.is_open(0.0)  # a plain Zenoh subscriber never reports: no flow control
    assert window.in_flight_bytes == 0


def test_small_messages_always_go_beyond_them_the_window_follows_confirmations() -> None:
    window = FlowWindow(expire_s=30)
    window.sent(1, 1 * KB, now=0.0)
    window.confirmed("gpu", 1, now=0.01)
    now = 0.01
    seq = 1
    # An outage: nothing is confirmed, but up to FREE_BYTES may be in flight however long.
    while window.in_flight_bytes + KB <= FREE_BYTES:
        seq += 1
        window.sent(seq, KB, now)
        now += 0.02
        assert window.is_open(now)
    # Past FREE_BYTES with nothing confirmed for long: closed.
    seq += 1
    window.sent(seq, KB, now)
    assert not window.is_open(now + LAG_LIMIT_S)
    # The receiver got everything: open again.
    window.confirmed("gpu", seq, now=now + LAG_LIMIT_S)
    assert window.in_flight_bytes == 0
    assert window.is_open(now + LAG_LIMIT_S)


def test_in_flight_settles_at_about_max_lag_of_the_delivery_rate() -> None:
    # A link that delivers 125 KB/s (1 Mbit/s), offered 400 KB/s in 4 KB messages.
    window = FlowWindow(expire_s=30)
    rate, size, now, seq, delivered = 125 * KB, 4 * KB, 0.0, 0, 0
    window.sent(1, size, now)
    seq = 1
    window.confirmed("robot", 0, now)
    peak = 0
    for _ in range(600):  # 6 s in 10 ms steps
        now += 0.01
        for _ in range(4):  # offered 4 messages per step
            if window.is_open(now):
                seq += 1
                window.sent(seq, size, now)
        delivered += int(rate * 0.01)
        if int(now * 100) % 5 == 0:  # a report every 50 ms
            window.confirmed("robot", delivered // size, now)
        peak = max(peak, window.in_flight_bytes) if now > 3 else peak
    # Bounded by about MAX_LAG_S of the link's rate (plus a report's worth), not by buffers.
    assert peak <= rate * MAX_LAG_S * 1.3 + FREE_BYTES
    assert window.lag(now) <= LAG_LIMIT_S


def test_slowest_receiver_counts_and_settle_forget_and_expiry_release_it() -> None:
    window = FlowWindow(expire_s=5)
    window.sent(1, KB, 0.0)
    window.confirmed("a", 1, 0.0)
    window.confirmed("b", 1, 0.0)
    for seq in range(2, 200):
        window.sent(seq, KB, 0.0)
    window.confirmed("a", 199, 0.1)
    assert window.in_flight_bytes == 198 * KB  # b has confirmed nothing more
    assert not window.is_open(LAG_LIMIT_S + 0.1)
    window.settle("b", LAG_LIMIT_S + 0.2)  # b's link came back: stop waiting for the old ones
    assert window.in_flight_bytes == 0
    for seq in range(200, 400):
        window.sent(seq, KB, 3.0)
    assert not window.is_open(3.0 + LAG_LIMIT_S + 0.1)
    window.forget("a", 5.5)
    window.forget("b", 5.5)
    assert window.is_open(5.5)
    assert window.receivers == ()
    # Expiry: messages nobody confirms stop counting after expire_s.
    window.confirmed("a", 399, 6.0)
    for seq in range(400, 600):
        window.sent(seq, KB, 6.0)
    assert not window.is_open(6.0 + LAG_LIMIT_S + 0.1)
    assert window.retry_in(6.0 + LAG_LIMIT_S + 0.1) > 0
    assert window.is_open(11.1)


def test_numbers_from_an_earlier_sender_count_as_everything_sent() -> None:
    window = FlowWindow(expire_s=30)
    window.sent(1, KB, 0.0)
    window.confirmed("gpu", 0, 0.0)
    for seq in range(2, 200):
        window.sent(seq, KB, 0.0)
    window.confirmed("gpu", 1_000_000, 0.1)  # the receiver still remembers our predecessor
    assert window.in_flight_bytes == 0
