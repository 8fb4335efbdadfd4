"""Fixtures for the net layer's tests: a real robot <-> machine bridge pair on loopback.

The robot side runs on one DDS domain and the machine side on another, so the only way a message
gets across is through the two bridges and Zenoh (TCP on 127.0.0.1, scouting and shared memory
off). DDS stays on loopback through the session-wide fixture in test/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import zenoh
from net_test_helpers import DEPLOYMENT, Link, Side, free_tcp_port

from fogros_dist.net.bridge import Bridge
from fogros_dist.net.zenoh_config import config_for
from fogros_dist.ros.dds import DdsGraph
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import BridgeRunSpec, TopicSpec


@pytest.fixture
def types() -> MessageTypes:
    return MessageTypes("jazzy")


@pytest.fixture
def bridge_link(new_domain_id: Callable[[], int], tmp_path: Path) -> Iterator[Callable[..., Link]]:
    """``bridge_link(robot_out=..., robot_in=..., machine_out=..., machine_in=...)`` starts a
    machine bridge listening on a free 127.0.0.1 port and a robot bridge connecting to it, and
    returns both sides once both are ready. Everything is closed after the test."""
    closers: list[Callable[[], None]] = []

    def make(
        *,
        robot_out: Sequence[TopicSpec] = (),
        robot_in: Sequence[TopicSpec] = (),
        machine_out: Sequence[TopicSpec] = (),
        machine_in: Sequence[TopicSpec] = (),
    ) -> Link:
        port = free_tcp_port()
        endpoint = f"tcp/127.0.0.1:{port}"
        machine_spec = BridgeRunSpec(
            deployment=DEPLOYMENT,
            side="machine",
            machine="gpu",
            listen=(endpoint,),
            outbound=tuple(machine_out),
            inbound=tuple(machine_in),
            domain_id=new_domain_id(),
            graph="dds",
            stats_path=str(tmp_path / "machine-stats.json"),
        )
        robot_spec = BridgeRunSpec(
            deployment=DEPLOYMENT,
            side="robot",
            machine="robot",
            connect=(endpoint,),
            outbound=tuple(robot_out),
            inbound=tuple(robot_in),
            domain_id=new_domain_id(),
            graph="dds",
            stats_path=str(tmp_path / "robot-stats.json"),
        )
        machine = _side(machine_spec, closers)
        robot = _side(robot_spec, closers)
        return Link(robot=robot, machine=machine, port=port, closers=closers)

    yield make
    for close in reversed(closers):
        close()


def _side(spec: BridgeRunSpec, closers: list[Callable[[], None]]) -> Side:
    graph = DdsGraph(spec.domain_id)
    closers.append(graph.close)
    app = DdsGraph(spec.domain_id)
    closers.append(app.close)
    session = zenoh.open(config_for(spec))
    closers.append(session.close)
    bridge = Bridge(spec=spec, graph=graph, session=session)
    closers.append(bridge.close)
    bridge.start(peer_timeout=5.0)
    return Side(spec=spec, graph=graph, app=app, session=session, bridge=bridge)
