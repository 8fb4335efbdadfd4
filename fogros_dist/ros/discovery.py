"""``ros_discovery_info``: how a ROS 2 graph learns which node owns which DDS reader and writer.

DDS knows participants, readers and writers, not nodes. rmw implementations on DDS
(rmw_cyclonedds_cpp, rmw_fastrtps_cpp) therefore publish, for each participant, one
``rmw_dds_common/msg/ParticipantEntitiesInfo`` on the DDS topic ``ros_discovery_info`` (no ``rt/``
prefix; reliable, transient local, keep last 1): the participant's GID and, per node, its
namespace, name and the GIDs of the readers and writers it owns. rmw_dds_common's graph cache
answers ``ros2 node list`` and ``ros2 node info`` from these messages joined with DCPS discovery;
an endpoint no message claims shows as ``_NODE_NAME_UNKNOWN_`` in ``ros2 topic info -v``.

A GID is the endpoint's 16-byte DDS GUID, zero-padded to the length of ``Gid.data`` (``char[24]``
in Humble, whose ``rmw_gid_t`` held 24 bytes; ``char[16]`` from Iron on), exactly what
rmw_cyclonedds_cpp's ``convert_guid_to_gid`` stores. The length is read from the distribution's
message definition, so each distro gets its own layout.

This module builds and reads those messages and keeps the roster of nodes and their endpoints;
:class:`~fogros_dist.ros.dds.DdsGraph` publishes it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from fogros_dist.errors import ConfigError
from fogros_dist.ros.node_names import NodeName
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import QosSpec

__all__ = [
    "DISCOVERY_QOS",
    "DISCOVERY_TOPIC",
    "GUID_SIZE",
    "PARTICIPANT_INFO_TYPE",
    "EndpointKind",
    "NodeEntities",
    "NodeRoster",
    "ParticipantInfo",
    "decode_participant_info",
    "encode_participant_info",
]

DISCOVERY_TOPIC = "ros_discovery_info"
PARTICIPANT_INFO_TYPE = "rmw_dds_common/msg/ParticipantEntitiesInfo"
# rmw_cyclonedds_cpp's rmw_context_impl_s::init: reliable, transient local, keep last 1, so a late
# joiner gets each participant's latest roster and nothing older.
DISCOVERY_QOS = QosSpec(reliability="reliable", durability="transient_local", depth=1)
# A DDS GUID: 12-byte participant prefix + 4-byte entity id.
GUID_SIZE = 16

_GID_TYPE = "rmw_dds_common/msg/Gid"
_NODE_TYPE = "rmw_dds_common/msg/NodeEntitiesInfo"

EndpointKind = Literal["reader", "writer"]


@dataclass(frozen=True, kw_only=True)
class NodeEntities:
    """One node and the DDS endpoints it owns (each a 16-byte GUID)."""

    name: NodeName
    readers: tuple[bytes, ...] = ()
    writers: tuple[bytes, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ParticipantInfo:
    """The content of one ``ros_discovery_info`` sample: a participant's GUID and its nodes."""

    participant: bytes
    nodes: tuple[NodeEntities, ...] = ()


def _gid_length(types: MessageTypes) -> int:
    _, fields = types.field_definitions(_GID_TYPE)
    (_, (_, (_, length))) = fields[0]  # ("data", (ARRAY, ((BASE, ("char", 0)), length)))
    return int(length)


def encode_participant_info(types: MessageTypes, info: ParticipantInfo) -> bytes:
    """Serialize ``info`` as ``types``' distribution's ``ParticipantEntitiesInfo`` (CDR, header included).

    Raises:
        ConfigError: a GUID is not 16 bytes.
        UnknownMessageType: the distribution lacks rmw_dds_common's messages.
    """
    gid_cls = types.message_class(_GID_TYPE)
    node_cls = types.message_class(_NODE_TYPE)
    info_cls = types.message_class(PARTICIPANT_INFO_TYPE)
    padding = bytes(_gid_length(types) - GUID_SIZE)

    def gid(guid: bytes) -> object:
        if len(guid) != GUID_SIZE:
            msg = f"DDS GUID {guid.hex()} is {len(guid)} bytes: a GUID has {GUID_SIZE}"
            raise ConfigError(msg)
        return gid_cls(data=np.frombuffer(guid + padding, dtype=np.uint8))

    message = info_cls(
        gid=gid(info.participant),
        node_entities_info_seq=[
            node_cls(
                node_namespace=node.name.namespace,
                node_name=node.name.name,
                reader_gid_seq=[gid(g) for g in node.readers],
                writer_gid_seq=[gid(g) for g in node.writers],
            )
            for node in info.nodes
        ],
    )
    return types.serialize(PARTICIPANT_INFO_TYPE, message)


def decode_participant_info(types: MessageTypes, cdr: bytes) -> ParticipantInfo:
    """Read a ``ros_discovery_info`` sample (from any rmw on DDS); GIDs come back as 16-byte GUIDs.

    Raises:
        ConfigError: the bytes are not a ``ParticipantEntitiesInfo`` of this distribution.
    """
    message = types.deserialize(PARTICIPANT_INFO_TYPE, cdr)

    def guid(gid: object) -> bytes:
        return bytes(gid.data.tobytes()[:GUID_SIZE])  # type: ignore[attr-defined]

    return ParticipantInfo(
        participant=guid(message.gid),
        nodes=tuple(
            NodeEntities(
                name=NodeName(namespace=node.node_namespace, name=node.node_name),
                readers=tuple(guid(g) for g in node.reader_gid_seq),
                writers=tuple(guid(g) for g in node.writer_gid_seq),
            )
            for node in message.node_entities_info_seq
        ),
    )


class NodeRoster:
    """Which of a participant's endpoints belong to which node; thread-safe.

    Nodes keep the order they were added in (the graph's own node first), and stay listed when
    their last endpoint goes, as a ROS node without topics does.

    Args:
        nodes: the nodes to list from the start.
    """

    def __init__(self, nodes: Iterable[NodeName] = ()) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[NodeName, None] = {}
        # GUID -> (kind, owning nodes)
        self._endpoints: dict[bytes, tuple[EndpointKind, tuple[NodeName, ...]]] = {}
        for node in nodes:
            self.add_node(node)

    def add_node(self, node: NodeName) -> bool:
        """List ``node``; True if it was not listed yet."""
        with self._lock:
            if node in self._nodes:
                return False
            self._nodes[node] = None
            return True

    def add_endpoint(self, guid: bytes, kind: EndpointKind, nodes: Sequence[NodeName]) -> None:
        """Record that ``nodes`` (listed now if they were not) own the endpoint ``guid``.

        Raises:
            ConfigError: ``nodes`` is empty.
        """
        if not nodes:
            msg = f"{kind} {guid.hex()} needs at least one owning node"
            raise ConfigError(msg)
        with self._lock:
            for node in nodes:
                self._nodes.setdefault(node, None)
            self._endpoints[guid] = (kind, tuple(dict.fromkeys(nodes)))

    def remove_endpoint(self, guid: bytes) -> bool:
        """Forget the endpoint ``guid``; True if it was recorded."""
        with self._lock:
            return self._endpoints.pop(guid, None) is not None

    def snapshot(self, participant: bytes) -> ParticipantInfo:
        """The roster now, as the ``ros_discovery_info`` content of ``participant``."""
        with self._lock:
            owned: dict[NodeName, tuple[list[bytes], list[bytes]]] = {n: ([], []) for n in self._nodes}
            for guid, (kind, nodes) in self._endpoints.items():
                for node in nodes:
                    owned[node][0 if kind == "reader" else 1].append(guid)
        return ParticipantInfo(
            participant=participant,
            nodes=tuple(
                NodeEntities(name=node, readers=tuple(readers), writers=tuple(writers))
                for node, (readers, writers) in owned.items()
            ),
        )
