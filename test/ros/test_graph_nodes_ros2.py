"""The graph adapters' nodes as real ROS 2 sees them: ``ros2 node list`` / ``ros2 node info``.

Needs a sourced ROS 2 with rmw_cyclonedds_cpp; skipped without rclpy. The ``ros2`` executable runs
in a fresh bash that sources ROS 2, with ``--no-daemon`` (see ``ros_graph_view.ros2``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ros_graph_view import GraphView, ros2_until
from ros_test_helpers import Inbox, Waiter, string_cdr

from fogros_dist.ros.dds import DdsGraph
from fogros_dist.ros.graph import RosGraph
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import TopicSpec

pytestmark = pytest.mark.ros
pytest.importorskip("rclpy")

from fogros_dist.ros.rclpy_graph import RclpyGraph  # noqa: E402  (after the skip)

STRING = "std_msgs/msg/String"
GRASPS = TopicSpec(name="/grasps", type=STRING)
CAMERA = TopicSpec(name="/camera/depth", type=STRING)
BRIDGE = "/fogros_dist/demo_bridge"
PLANNER = "/perception/grasp_planner"
VIEWER = "/viewer"


@pytest.fixture(params=["dds", "rclpy"])
def graph(request: pytest.FixtureRequest, ros_domain_id: int) -> Iterator[RosGraph]:
    kind = RclpyGraph if request.param == "rclpy" else DdsGraph
    opened: RosGraph = kind(ros_domain_id, node_name=BRIDGE, nodes=[PLANNER, "/idle"])
    yield opened
    opened.close()


def test_ros2_node_list_and_info_show_each_node_with_its_topics(graph: RosGraph, ros_domain_id: int) -> None:
    graph.publisher(GRASPS, nodes=[PLANNER])
    graph.subscribe(CAMERA, lambda _cdr: None, nodes=[PLANNER, VIEWER])

    listed = ros2_until(
        ["node", "list"], ros_domain_id, lambda out: {BRIDGE, PLANNER, VIEWER, "/idle"} <= set(out.split())
    )
    assert "WARNING" not in listed
    info = ros2_until(["node", "info", PLANNER], ros_domain_id, lambda out: "/grasps" in out)
    subscribers, rest = info.split("Publishers:")
    publishers, services = rest.split("Service Servers:")
    assert _topics(subscribers.split("Subscribers:")[1]) == ["/camera/depth: std_msgs/msg/String"]
    assert _topics(publishers) == ["/grasps: std_msgs/msg/String"]
    # A stand-in answers no parameter services: the real node is elsewhere.
    assert services.split("Service Clients:")[0].split() == []
    viewer = ros2_until(["node", "info", VIEWER], ros_domain_id, lambda out: "/camera/depth" in out)
    assert "/grasps" not in viewer
    idle = ros2_until(["node", "info", "/idle"], ros_domain_id, lambda out: "Subscribers:" in out)
    assert "/camera/depth" not in idle
    assert "/grasps" not in idle


def _topics(section: str) -> list[str]:
    """The ``name: type`` lines of a ``ros2 node info`` section, without /parameter_events, which
    every rclpy node publishes (as the real node does too)."""
    lines = [line.strip() for line in section.strip().splitlines()]
    return [line for line in lines if line and not line.startswith("/parameter_events:")]


def test_graph_view_reads_rmw_rosters_as_it_reads_ours(ros_domain_id: int) -> None:
    """The reader the non-ROS tests rely on agrees with rmw_cyclonedds_cpp's own messages."""
    view = GraphView(ros_domain_id)
    try:
        with RclpyGraph(ros_domain_id, node_name=BRIDGE, nodes=[PLANNER]) as rclpy_graph:
            rclpy_graph.publisher(GRASPS, nodes=[PLANNER])
            rclpy_graph.subscribe(CAMERA, lambda _cdr: None, nodes=[PLANNER, VIEWER])
            expected = ({"rt/grasps", "rt/parameter_events"}, {"rt/camera/depth"})
            assert view.wait(
                lambda v: (
                    v.topics_of(PLANNER) == expected
                    and v.topics_of(VIEWER) == ({"rt/parameter_events"}, {"rt/camera/depth"})
                )
            ), (view.topics_of(PLANNER), view.topics_of(VIEWER))
            # Stand-ins are endpoints of their own: the viewer's reader is not the planner's.
            planner, viewer = view.node(PLANNER), view.node(VIEWER)
            assert planner is not None
            assert viewer is not None
            assert set(planner.reader_gids).isdisjoint(viewer.reader_gids)
    finally:
        view.close()


def test_rclpy_subscription_owned_by_several_nodes_delivers_each_message_once(
    ros_domain_id: int, wait_for: Waiter
) -> None:
    types = MessageTypes("jazzy")
    inbox = Inbox()
    with (
        RclpyGraph(ros_domain_id, node_name=BRIDGE) as rclpy_graph,
        DdsGraph(ros_domain_id) as app,
    ):
        subscription = rclpy_graph.subscribe(CAMERA, inbox, nodes=[PLANNER, VIEWER, "/third"])
        publisher = app.publisher(CAMERA)
        assert wait_for(lambda: publisher.matched_count() == 3, 10.0)  # one reader per owner
        for n in range(5):
            publisher.publish(string_cdr(types, f"frame {n}"))
        got = [types.deserialize(STRING, inbox.get()).data for _ in range(5)]  # type: ignore[attr-defined]
        assert got == [f"frame {n}" for n in range(5)]
        assert not wait_for(lambda: not inbox.empty(), 0.5)
        subscription.close()
        assert wait_for(lambda: publisher.matched_count() == 0, 10.0)  # stand-ins went with it


def test_rclpy_discover_type_ignores_every_node_of_the_graph(ros_domain_id: int) -> None:
    with RclpyGraph(ros_domain_id, nodes=[PLANNER]) as rclpy_graph:
        rclpy_graph.publisher(GRASPS, nodes=[PLANNER])
        assert rclpy_graph.discover_type(GRASPS.name, 0.5) is None
        with DdsGraph(ros_domain_id) as app:
            app.publisher(GRASPS)
            assert rclpy_graph.discover_type(GRASPS.name, 10.0) == STRING
