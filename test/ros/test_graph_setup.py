"""open_graph's adapter choice, and the loopback-only Cyclone DDS configuration."""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from cyclonedds.domain import Domain, DomainParticipant

from fogros_dist.errors import ConfigError, MissingDependency
from fogros_dist.ros import open_graph
from fogros_dist.ros.cyclone_config import apply_loopback_config, loopback_config, loopback_env
from fogros_dist.ros.dds import DdsGraph, keep_large_messages_on_heap

NS = {"c": "https://cdds.io/config"}


def test_loopback_config_keeps_dds_on_lo_without_multicast() -> None:
    root = ET.fromstring(loopback_config(7))
    domain = root.find("c:Domain", NS)
    assert domain is not None
    assert domain.get("Id") == "7"
    interfaces = domain.findall("c:General/c:Interfaces/c:NetworkInterface", NS)
    assert [(i.get("name"), i.get("multicast")) for i in interfaces] == [("lo", "false")]
    assert domain.findtext("c:General/c:AllowMulticast", namespaces=NS) == "false"
    assert domain.findtext("c:Discovery/c:ParticipantIndex", namespaces=NS) == "auto"
    assert domain.findtext("c:Discovery/c:MaxAutoParticipantIndex", namespaces=NS) == "60"
    assert [p.get("address") for p in domain.findall("c:Discovery/c:Peers/c:Peer", NS)] == ["127.0.0.1"]
    assert ET.fromstring(loopback_config()).find("c:Domain", NS).get("Id") == "any"  # type: ignore[union-attr]


def test_loopback_config_rejects_bad_values() -> None:
    with pytest.raises(ConfigError, match=r"DDS domain id 233 is out of range: use 0..232"):
        loopback_config(233)
    with pytest.raises(ConfigError, match=r"max_participant_index 0 is out of range: use 1..100"):
        loopback_config(1, max_participant_index=0)


def test_cyclone_accepts_the_config_and_selects_only_lo(ros_domain_id: int, tmp_path: Path) -> None:
    trace = tmp_path / "cyclone.log"
    tracing = (
        f'<CycloneDDS><Domain Id="{ros_domain_id}"><Tracing><Verbosity>config</Verbosity>'
        f"<OutputFile>{trace}</OutputFile></Tracing></Domain></CycloneDDS>"
    )
    domain = Domain(ros_domain_id, loopback_config(ros_domain_id) + "," + tracing)
    participant = DomainParticipant(ros_domain_id)
    try:
        log = trace.read_text()
    finally:
        participant.__del__()
        domain.__del__()
    assert "selected interfaces: lo " in log
    assert "ownip: udp/127.0.0.1" in log
    assert "MaxMessageSize/#text: 65500 B {1}" in log


def test_the_session_runs_on_the_loopback_config() -> None:
    assert os.environ["CYCLONEDDS_URI"] == loopback_config()
    assert os.environ["RMW_IMPLEMENTATION"] == "rmw_cyclonedds_cpp"
    assert loopback_env()["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"


def test_apply_loopback_config_returns_what_it_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CYCLONEDDS_URI", "file:///elsewhere.xml")
    monkeypatch.delenv("ROS_AUTOMATIC_DISCOVERY_RANGE", raising=False)
    monkeypatch.delenv("EXTRA", raising=False)  # monkeypatch restores all three afterwards
    previous = apply_loopback_config(3, environ={"EXTRA": "1"})
    assert previous == {
        "CYCLONEDDS_URI": "file:///elsewhere.xml",
        "ROS_AUTOMATIC_DISCOVERY_RANGE": None,
        "EXTRA": None,
    }
    assert os.environ["CYCLONEDDS_URI"] == loopback_config(3)


def test_open_graph_dds(ros_domain_id: int) -> None:
    graph = open_graph("dds", ros_domain_id, distro="humble")
    try:
        assert isinstance(graph, DdsGraph)
        assert graph.domain_id == ros_domain_id
        assert graph.types.distro == "humble"
    finally:
        graph.close()


def test_open_graph_without_rclpy(ros_domain_id: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rclpy", None)  # `import rclpy` now fails as without ROS 2
    with pytest.raises(MissingDependency, match=r"needs ROS 2's rclpy .*source /opt/ros/<distro>/setup.bash"):
        open_graph("rclpy", ros_domain_id)
    graph = open_graph("auto", ros_domain_id)
    try:
        assert isinstance(graph, DdsGraph)
    finally:
        graph.close()


def test_open_graph_rejects_unknown_kinds() -> None:
    with pytest.raises(ConfigError, match=r"graph kind 'zenoh' is unknown: use 'auto', 'dds' or 'rclpy'"):
        open_graph("zenoh")  # type: ignore[arg-type]


def test_allocator_tuning_is_idempotent() -> None:
    assert keep_large_messages_on_heap() is keep_large_messages_on_heap()
