"""Bridges run in this process as their processes run them (``bridge_main.run``), one thread
per side, for tests that need a whole link without starting processes."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

from fogros_dist.net.bridge_main import run
from fogros_dist.spec import BridgeRunSpec

__all__ = ["free_port", "run_bridges"]


@contextlib.contextmanager
def run_bridges(*specs: BridgeRunSpec) -> Iterator[None]:
    """Each spec run by ``bridge_main.run`` on its own thread (the machine's first: it listens)."""
    stop = threading.Event()
    failures: list[BaseException] = []

    def side(spec: BridgeRunSpec) -> None:
        try:
            run(spec, stop=stop, peer_timeout=20.0)
        except BaseException as err:  # raised when the block ends, not lost with the thread
            failures.append(err)

    threads = [threading.Thread(target=side, args=(spec,), daemon=True) for spec in specs]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=20.0)
    assert not failures, failures
    assert not any(t.is_alive() for t in threads), "a bridge did not stop"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
