"""DdsGraph's nodes on the wire: ros_discovery_info, read back as rmw reads it (no ROS 2 needed).

The samples are taken by a plain Cyclone reader and decoded by rosbags (``ros_graph_view``), and
their GIDs are matched against the readers and writers DCPS discovery reports, which is the join
``ros2 node list`` / ``ros2 node info`` make.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ros_graph_view import GraphView

from fogros_dist.errors import ConfigError
from fogros_dist.ros.dds import DdsGraph
from fogros_dist.ros.discovery import (
    NodeEntities,
    NodeRoster,
    ParticipantInfo,
    decode_participant_info,
    encode_participant_info,
)
from fogros_dist.ros.node_names import parse_node_name
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import TopicSpec

STRING = "std_msgs/msg/String"
GRASPS = TopicSpec(name="/grasps", type=STRING)
CAMERA = TopicSpec(name="/camera/depth", type=STRING)
PLANNER = "/perception/grasp_planner"
BRIDGE = "/fogros_dist/demo_bridge"


@pytest.fixture
def view(ros_domain_id: int) -> Iterator[GraphView]:
    graph_view = GraphView(ros_domain_id)
    yield graph_view
    graph_view.close()


def test_dds_graph_lists_its_nodes_with_the_gids_of_their_endpoints(
    ros_domain_id: int, view: GraphView
) -> None:
    with DdsGraph(ros_domain_id, node_name=BRIDGE, nodes=[PLANNER, "/idle"]) as graph:
        publisher = graph.publisher(GRASPS, nodes=[PLANNER])
        subscription = graph.subscribe(CAMERA, lambda _cdr: None, nodes=[PLANNER, "/viewer"])
        own = graph.subscribe(TopicSpec(name="/status", type=STRING), lambda _cdr: None)
        assert graph.node_name == BRIDGE

        def complete(v: GraphView) -> bool:
            return v.topics_of(PLANNER) == ({"rt/grasps"}, {"rt/camera/depth"}) and v.topics_of(BRIDGE) == (
                set(),
                {"rt/status"},
            )

        assert view.wait(complete), (view.rosters, view.writers, view.readers)
        assert view.participant_of(BRIDGE) == graph.guid
        roster = view.rosters[graph.guid]
        assert [n.full_name for n in roster] == [BRIDGE, PLANNER, "/idle", "/viewer"]
        # GIDs are the endpoints' DDS GUIDs, which DCPS discovery reports for this participant.
        planner = view.node(PLANNER)
        assert planner is not None
        assert set(planner.writer_gids) == {g for g, (p, t) in view.writers.items() if t == "rt/grasps"}
        assert all(view.writers[g][0] == graph.guid for g in planner.writer_gids)
        # One reader, owned by two nodes: both list the same GID.
        viewer = view.node("/viewer")
        assert viewer is not None
        assert viewer.reader_gids == planner.reader_gids
        assert len(viewer.reader_gids) == 1
        assert view.topics_of("/idle") == (set(), set())

        # Closing endpoints updates the roster; the nodes stay, as nodes without topics do.
        publisher.close()
        subscription.close()
        assert view.wait(lambda v: v.topics_of(PLANNER) == (set(), set()))
        assert [n.full_name for n in view.rosters[graph.guid]] == [BRIDGE, PLANNER, "/idle", "/viewer"]
        node = view.node(PLANNER)
        assert node is not None
        assert node.writer_gids == ()
        assert node.reader_gids == ()
        own.close()


def test_humble_graph_sends_24_byte_gids(ros_domain_id: int) -> None:
    view = GraphView(ros_domain_id, distro="humble")
    try:
        with DdsGraph(ros_domain_id, distro="humble", node_name="talker") as graph:
            graph.publisher(GRASPS)
            assert view.wait(lambda v: v.topics_of("/talker") == ({"rt/grasps"}, set()))
            # The 16-byte GUID, then 8 zero bytes: rmw_cyclonedds_cpp's convert_guid_to_gid.
            assert view.participant_of("/talker") == graph.guid + bytes(8)
    finally:
        view.close()


def test_default_node_name_is_unique_per_graph(ros_domain_id: int, view: GraphView) -> None:
    with DdsGraph(ros_domain_id) as first, DdsGraph(ros_domain_id) as second:
        assert first.node_name != second.node_name
        assert view.wait(
            lambda v: (
                v.participant_of(first.node_name) == first.guid
                and v.participant_of(second.node_name) == second.guid
            )
        )


@pytest.mark.parametrize(("where"), ["node_name", "nodes", "endpoint"])
def test_invalid_node_names_are_refused_in_one_line(ros_domain_id: int, where: str) -> None:
    match = r"node name 'grasp-planner' .* is invalid: use letters, digits and '_'"
    if where == "endpoint":
        with DdsGraph(ros_domain_id) as graph, pytest.raises(ConfigError, match=match):
            graph.publisher(GRASPS, nodes=["/grasp-planner"])
        return
    kwargs = {"node_name": "grasp-planner"} if where == "node_name" else {"nodes": ["/grasp-planner"]}
    with pytest.raises(ConfigError, match=match):
        DdsGraph(ros_domain_id, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("distro", ["humble", "jazzy", "kilted"])
def test_participant_info_round_trips_in_each_distros_layout(distro: str) -> None:
    types = MessageTypes(distro)
    guid = bytes(range(16))
    info = ParticipantInfo(
        participant=guid,
        nodes=(
            NodeEntities(
                name=parse_node_name("/ns/a"), readers=(bytes(16),), writers=(guid, bytes([7]) * 16)
            ),
            NodeEntities(name=parse_node_name("b")),
        ),
    )
    cdr = encode_participant_info(types, info)
    assert decode_participant_info(types, cdr) == info
    message = types.deserialize("rmw_dds_common/msg/ParticipantEntitiesInfo", cdr)
    assert len(message.gid.data) == (24 if distro == "humble" else 16)
    with pytest.raises(ConfigError, match=r"DDS GUID 0102 is 2 bytes: a GUID has 16"):
        encode_participant_info(types, ParticipantInfo(participant=b"\x01\x02"))


def test_roster_keeps_node_order_and_owners() -> None:
    own, other = parse_node_name("/bridge"), parse_node_name("/ns/node")
    roster = NodeRoster([own])
    roster.add_endpoint(b"w" * 16, "writer", [other])
    roster.add_endpoint(b"r" * 16, "reader", [other, own, other])
    info = roster.snapshot(b"p" * 16)
    assert info.nodes == (
        NodeEntities(name=own, readers=(b"r" * 16,)),
        NodeEntities(name=other, readers=(b"r" * 16,), writers=(b"w" * 16,)),
    )
    assert roster.remove_endpoint(b"w" * 16)
    assert not roster.remove_endpoint(b"w" * 16)
    assert not roster.add_node(own)
    with pytest.raises(ConfigError, match="needs at least one owning node"):
        roster.add_endpoint(b"x" * 16, "reader", [])
