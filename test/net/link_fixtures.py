"""Two real bridge processes, a real link between them, and a ground truth of what got through.

``bridge_pair`` starts the machine bridge (``python -m fogros_dist.net.bridge_main``) in the
machine's network namespace of a :class:`~netns_link.NetnsLink` (or on this host's loopback),
listening on the machine's address, and the robot bridge here, connecting to it. A publisher
process (``link_app.py publish``) next to the sending bridge (the machine's, or on loopback the
robot's) sends numbered messages; a subscriber on the receiving side's graph, in this process,
records each message's number and latency. What the subscriber missed, number by number, is the
truth the bridges' counters are compared with.

Imported by the link test modules (fixtures: ``netns_link``, ``bridge_pair``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from link_app import STRING, parse_payload
from net_test_helpers import DEPLOYMENT, free_tcp_port
from netns_link import NetnsLink, link_unavailable, open_link

from fogros_dist.ros.dds import DdsGraph
from fogros_dist.spec import BridgeRunSpec, BridgeSpec, QosSpec, TopicSpec, to_json

__all__ = ["BridgePair", "Received", "bridge_pair", "netns_link", "rss_kib"]

_LINK_APP = str(Path(__file__).with_name("link_app.py"))
_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def netns_link() -> Iterator[NetnsLink]:
    """A fresh namespace + veth link, removed (with everything started in it) afterwards."""
    why = link_unavailable()
    if why:
        pytest.skip(f"network namespace link: {why}")
    link = open_link()
    try:
        yield link
    finally:
        link.close()


def rss_kib(pid: int) -> int:
    """A process's resident memory (``VmRSS`` from /proc/<pid>/status), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    msg = f"no VmRSS for process {pid}"
    raise RuntimeError(msg)


class Received:
    """What a real subscriber on the robot's graph got: each message's number and latency."""

    def __init__(self, graph: DdsGraph, topic: TopicSpec) -> None:
        self._lock = threading.Lock()
        self._types = graph.types
        self.seqs: list[int] = []
        self.latencies_s: list[float] = []
        self.subscription = graph.subscribe(topic, self._on_message)

    def _on_message(self, cdr: bytes) -> None:
        seq, sent_ns = parse_payload(self._types.deserialize(STRING, cdr).data)
        with self._lock:
            self.seqs.append(seq)
            self.latencies_s.append((time.time_ns() - sent_ns) / 1e9)

    def count(self) -> int:
        with self._lock:
            return len(self.seqs)

    def missed(self, sent: int) -> list[int]:
        """The numbers of 1..sent that never arrived."""
        with self._lock:
            return sorted(set(range(1, sent + 1)) - set(self.seqs))

    def wait_quiet(self, *, expected: int, quiet_s: float, timeout: float) -> None:
        """Wait until ``expected`` messages arrived, or none arrived for ``quiet_s``."""
        deadline = time.monotonic() + timeout
        last, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            now_count = self.count()
            if now_count >= expected:
                return
            if now_count != last:
                last, last_change = now_count, time.monotonic()
            elif time.monotonic() - last_change > quiet_s:
                return
            time.sleep(0.05)


@dataclass
class BridgePair:
    """A running machine bridge (in the link's namespace) and robot bridge (here)."""

    topic: TopicSpec
    sender: str
    endpoint: str
    machine_domain: int
    robot_domain: int
    workdir: Path
    start: Callable[..., subprocess.Popen[str]]
    machine: subprocess.Popen[str]
    robot: subprocess.Popen[str]
    received: Received
    in_machine_netns: bool
    publishers: list[subprocess.Popen[str]] = field(default_factory=list)

    def log(self, side: str) -> str:
        """Everything a bridge wrote to stderr so far."""
        return (self.workdir / f"{side}.log").read_text()

    def publish(self, *, rate: float, count: int, size: int = 64) -> subprocess.Popen[str]:
        """Start a publisher next to the sending bridge; returns once it matched the bridge."""
        domain = self.machine_domain if self.sender == "machine" else self.robot_domain
        proc = self.start(
            [
                sys.executable,
                _LINK_APP,
                "publish",
                "--domain",
                str(domain),
                "--topic",
                self.topic.name,
                "--rate",
                str(rate),
                "--count",
                str(count),
                "--size",
                str(size),
                "--reliability",
                self.topic.qos.reliability,
                "--depth",
                str(self.topic.qos.depth),
            ],
            machine=self.in_machine_netns and self.sender == "machine",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=_ROOT,
        )
        self.publishers.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        return proc

    @staticmethod
    def go(publisher: subprocess.Popen[str]) -> None:
        """Tell a publisher to start sending."""
        assert publisher.stdin is not None
        publisher.stdin.write("go\n")
        publisher.stdin.flush()

    @staticmethod
    def wait_sent(publisher: subprocess.Popen[str], timeout: float) -> int:
        """Wait for the publisher's ``sent N`` line; returns N."""
        assert publisher.stdout is not None
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(publisher.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        assert result, f"the publisher did not finish within {timeout:g} s"
        return int(result[0].split()[1])

    def stop(self) -> dict[str, dict[str, Any]]:
        """Stop both bridges (SIGTERM: they write their final stats) and return each side's
        stats file: ``{"machine": ..., "robot": ...}``."""
        for proc in self.publishers:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in (self.robot, self.machine):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in (self.robot, self.machine):
            proc.wait(timeout=20)
        return {
            side: json.loads((self.workdir / f"{side}-stats.json").read_text())
            for side in ("machine", "robot")
        }


def topic_stats(stats: dict[str, Any], direction: str) -> dict[str, Any]:
    """The one topic entry of a bridge's stats file in ``direction``."""
    (entry,) = [t for t in stats["topics"] if t["direction"] == direction]
    return entry


@pytest.fixture
def bridge_pair(new_domain_id: Callable[[], int], tmp_path: Path) -> Iterator[Callable[..., BridgePair]]:
    """``bridge_pair(link=..., topic=..., bridge=BridgeSpec(...), sender="machine")``: start both
    bridges across ``link`` (a NetnsLink; None: this host's loopback), ``topic`` flowing from
    ``sender``'s side to the other, and a subscriber on the receiving side's graph (which must
    then be this host's: with a link, the sender is the machine). Everything is stopped by PID
    afterwards."""
    cleanups: list[Callable[[], None]] = []

    def make(
        *,
        link: NetnsLink | None,
        topic: TopicSpec | None = None,
        bridge: BridgeSpec | None = None,
        sender: str = "machine",
    ) -> BridgePair:
        assert sender == "machine" or link is None, "the test process cannot join the machine's graph"
        topic = topic or TopicSpec(
            name="/link/test", type=STRING, qos=QosSpec(reliability="reliable", depth=10)
        )
        bridge = bridge or BridgeSpec(protocol="tcp")
        machine_domain, robot_domain = new_domain_id(), new_domain_id()
        host = link.machine_address if link is not None else "127.0.0.1"
        port = 7447 if link is not None else free_tcp_port()
        endpoint = f"tcp/{host}:{port}"
        specs = {
            "machine": BridgeRunSpec(
                deployment=DEPLOYMENT,
                side="machine",
                machine="gpu",
                listen=(endpoint,),
                outbound=(topic,) if sender == "machine" else (),
                inbound=(topic,) if sender == "robot" else (),
                bridge=bridge,
                domain_id=machine_domain,
                graph="dds",
                stats_path=str(tmp_path / "machine-stats.json"),
            ),
            "robot": BridgeRunSpec(
                deployment=DEPLOYMENT,
                side="robot",
                machine="robot",
                connect=(endpoint,),
                inbound=(topic,) if sender == "machine" else (),
                outbound=(topic,) if sender == "robot" else (),
                bridge=bridge,
                domain_id=robot_domain,
                graph="dds",
                stats_path=str(tmp_path / "robot-stats.json"),
            ),
        }
        started: list[subprocess.Popen[str]] = []

        def start(argv: list[str], *, machine: bool, **popen: Any) -> subprocess.Popen[str]:
            if link is not None:
                return link.start(argv, machine=machine, **popen)
            proc: subprocess.Popen[str] = subprocess.Popen(argv, text=True, **popen)
            started.append(proc)
            return proc

        def stop_started() -> None:
            for proc in started:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()

        cleanups.append(stop_started)
        procs: dict[str, subprocess.Popen[str]] = {}
        for side, spec in specs.items():
            spec_path = tmp_path / f"{side}.json"
            spec_path.write_text(to_json(spec))
            log = (tmp_path / f"{side}.log").open("w")
            cleanups.append(log.close)
            proc = start(
                [sys.executable, "-m", "fogros_dist.net.bridge_main", "--spec", str(spec_path)],
                machine=(side == "machine"),
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=_ROOT,
            )
            procs[side] = proc
            assert proc.stdout is not None
            ready = proc.stdout.readline()
            assert ready.startswith("bridge ready"), (tmp_path / f"{side}.log").read_text()
        graph = DdsGraph(robot_domain if sender == "machine" else machine_domain)
        cleanups.append(graph.close)
        received = Received(graph, topic)
        return BridgePair(
            topic=topic,
            sender=sender,
            endpoint=endpoint,
            machine_domain=machine_domain,
            robot_domain=robot_domain,
            workdir=tmp_path,
            start=start,
            machine=procs["machine"],
            robot=procs["robot"],
            received=received,
            in_machine_netns=link is not None,
        )

    yield make
    for cleanup in reversed(cleanups):
        cleanup()
