"""A ROS 2 graph's nodes as rmw sees them, read without ROS 2 (a plain module shared by test/ros
and test/net).

It joins what rmw_dds_common's graph cache joins: the ``ros_discovery_info`` samples (taken raw by
a plain Cyclone reader with a hand-written IDL type, decoded by rosbags) and the DCPS builtin
topics (the readers and writers that really exist). Nothing from ``fogros_dist.ros`` is used, so
the adapters are checked against an independent reading of the wire.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cyclonedds._clayer import ddspy_take
from cyclonedds.builtin import BuiltinDataReader, BuiltinTopicDcpsPublication, BuiltinTopicDcpsSubscription
from cyclonedds.core import InstanceState, Policy, Qos, SampleState, ViewState
from cyclonedds.domain import DomainParticipant
from cyclonedds.idl import make_idl_struct
from cyclonedds.idl import types as idl
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration
from rosbags.typesys import Stores, get_typestore

_STORES = {"humble": Stores.ROS2_HUMBLE, "jazzy": Stores.ROS2_JAZZY}
_GID_LENGTH = {"humble": 24, "jazzy": 16}  # rmw_dds_common/msg/Gid: char[24] in Humble, char[16] after
_ANY = SampleState.Any | ViewState.Any | InstanceState.Any
INFO_TYPE = "rmw_dds_common/msg/ParticipantEntitiesInfo"


def _info_struct(gid_length: int) -> Any:
    gid = make_idl_struct(
        "Gid_", "rmw_dds_common::msg::dds_::Gid_", {"data": idl.array[idl.uint8, gid_length]}
    )
    node = make_idl_struct(
        "NodeEntitiesInfo_",
        "rmw_dds_common::msg::dds_::NodeEntitiesInfo_",
        {
            "node_namespace": idl.bounded_str[256],
            "node_name": idl.bounded_str[256],
            "reader_gid_seq": idl.sequence[gid],
            "writer_gid_seq": idl.sequence[gid],
        },
    )
    return make_idl_struct(
        "ParticipantEntitiesInfo_",
        "rmw_dds_common::msg::dds_::ParticipantEntitiesInfo_",
        {"gid": gid, "node_entities_info_seq": idl.sequence[node]},
    )


@dataclass(frozen=True)
class ViewedNode:
    """A node as ``ros_discovery_info`` lists it, with its GIDs exactly as sent."""

    full_name: str
    reader_gids: tuple[bytes, ...]
    writer_gids: tuple[bytes, ...]


@dataclass
class GraphView:
    """Everything one domain says about nodes and endpoints, updated by :meth:`poll`."""

    domain_id: int
    distro: str = "jazzy"
    # participant GUID -> its latest roster
    rosters: dict[bytes, tuple[ViewedNode, ...]] = field(default_factory=dict)
    # endpoint GUID -> (participant GUID, DDS topic name)
    writers: dict[bytes, tuple[bytes, str]] = field(default_factory=dict)
    readers: dict[bytes, tuple[bytes, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._store = get_typestore(_STORES[self.distro])
        self._participant = DomainParticipant(self.domain_id)
        topic = Topic(self._participant, "ros_discovery_info", _info_struct(_GID_LENGTH[self.distro]))
        qos = Qos(
            Policy.Reliability.Reliable(max_blocking_time=duration(seconds=1)),
            Policy.Durability.TransientLocal,
            Policy.History.KeepAll,
            Policy.DataRepresentation(use_cdrv0_representation=True),
            # As rmw's own reader announces it (Iron on), so rmw does not warn about a missing hash.
            *(
                [Policy.Userdata(data=f"typehash={self._store.hash_rihs01(INFO_TYPE)};".encode())]
                if self.distro != "humble"
                else []
            ),
        )
        self._info = DataReader(self._participant, topic, qos)
        self._publications = BuiltinDataReader(self._participant, BuiltinTopicDcpsPublication)
        self._subscriptions = BuiltinDataReader(self._participant, BuiltinTopicDcpsSubscription)

    def close(self) -> None:
        self._participant.__del__()

    def poll(self) -> None:
        """Take whatever arrived since the last call."""
        samples = ddspy_take(self._info._ref, _ANY, 256)
        assert not isinstance(samples, int), f"take failed: {samples}"
        for data, info in samples:
            if not info.valid_data:
                continue
            message = self._store.deserialize_cdr(data, INFO_TYPE)
            gid = bytes(message.gid.data.tobytes())
            assert len(gid) == _GID_LENGTH[self.distro]
            self.rosters[gid] = tuple(
                ViewedNode(
                    full_name=f"{node.node_namespace.rstrip('/')}/{node.node_name}",
                    reader_gids=tuple(bytes(g.data.tobytes()) for g in node.reader_gid_seq),
                    writer_gids=tuple(bytes(g.data.tobytes()) for g in node.writer_gid_seq),
                )
                for node in message.node_entities_info_seq
            )
        for reader, table in ((self._publications, self.writers), (self._subscriptions, self.readers)):
            for endpoint in reader.take(N=256):
                key = endpoint.key.bytes
                if endpoint.sample_info.instance_state == InstanceState.Alive:
                    table[key] = (endpoint.participant_key.bytes, endpoint.topic_name)
                else:
                    table.pop(key, None)

    def wait(self, condition: Any, timeout: float = 10.0) -> bool:
        """Poll until ``condition(self)`` holds; False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if condition(self):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def participant_of(self, node_name: str) -> bytes | None:
        """The GID of the participant whose roster lists ``node_name``, if one does."""
        for gid, nodes in self.rosters.items():
            if any(n.full_name == node_name for n in nodes):
                return gid
        return None

    def node(self, node_name: str) -> ViewedNode | None:
        for nodes in self.rosters.values():
            for node in nodes:
                if node.full_name == node_name:
                    return node
        return None

    def topics_of(self, node_name: str) -> tuple[set[str], set[str]]:
        """(topics the node publishes, topics it subscribes), as DDS topic names, joined the way
        rmw's graph cache joins them: by GID (the 16-byte GUID, zero-padded) against DCPS."""
        node = self.node(node_name)
        if node is None:
            return set(), set()
        pad = bytes(_GID_LENGTH[self.distro] - 16)
        writers = {guid + pad: topic for guid, (_, topic) in self.writers.items()}
        readers = {guid + pad: topic for guid, (_, topic) in self.readers.items()}
        return (
            {writers[g] for g in node.writer_gids if g in writers},
            {readers[g] for g in node.reader_gids if g in readers},
        )


def ros2(args: list[str], domain_id: int, *, spin_time: float = 1.0) -> subprocess.CompletedProcess[str]:
    """Run the real ``ros2`` executable (``ros2 <args> --no-daemon``) on ``domain_id``.

    ROS 2 is sourced in a fresh bash, as a user's shell would; the test session's loopback
    ``CYCLONEDDS_URI`` and RMW choice are inherited. ``--no-daemon``: a daemon started by an
    earlier run would answer from its own, possibly stale, graph.
    """
    distro = os.environ.get("ROS_DISTRO", "jazzy")
    command = " ".join(
        ["source", shlex.quote(f"/opt/ros/{distro}/setup.bash"), "&&", "ros2"]
        + [shlex.quote(a) for a in args]
        + ["--no-daemon", "--spin-time", str(spin_time)]
    )
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain_id)}
    return subprocess.run(
        ["bash", "-c", command], check=False, env=env, capture_output=True, text=True, timeout=60
    )


def ros2_until(args: list[str], domain_id: int, done: Callable[[str], bool], timeout: float = 20.0) -> str:
    """Run ``ros2 <args>`` until ``done(stdout)`` holds (discovery takes a moment); its stdout.

    Raises AssertionError with the last output after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = ros2(args, domain_id)
        if done(result.stdout):
            return result.stdout
        if time.monotonic() > deadline:
            msg = f"ros2 {' '.join(args)} never showed what was expected:\n{result.stdout}\n{result.stderr}"
            raise AssertionError(msg)
