"""`up` names what it puts on the robot's graph: the robot bridge after the deployment, and each
offloaded node under its own name, owning the robot-side endpoints of its topics.

A real deployment on the Local provider. The robot's graph is read as rmw reads it
(``ros_graph_view``): ros_discovery_info joined with DCPS discovery. Whichever graph adapter the
bridge picks (dds, or rclpy where ROS 2 is sourced) publishes the same roster.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from e2e_helpers import IN_TOPIC, OUT_TOPIC, edge_deployment
from ros_graph_view import GraphView

from fogros_dist.deploy.engine import Deployment
from fogros_dist.deploy.state import StateStore
from fogros_dist.spec import MachineSpec

DEPLOYMENT = "nodes-shown"
PROXY = "/vision/edges"
ROBOT_BRIDGE = "/fogros_dist/nodes_shown_bridge"


def test_robot_graph_shows_the_bridge_and_the_offloaded_node(tmp_path: Path, robot_domain: int) -> None:
    spec = edge_deployment(DEPLOYMENT, MachineSpec(name="gpu"))
    spec = dataclasses.replace(spec, nodes=(dataclasses.replace(spec.nodes[0], namespace="/vision"),))
    view = GraphView(robot_domain)
    deployment = Deployment(spec, store=StateStore(tmp_path / "home"), robot_domain_id=robot_domain)
    try:
        deployment.up()
        written = json.loads((deployment.state_dir / "bridge-robot.json").read_text())
        assert written["node_name"] == ROBOT_BRIDGE
        assert written["proxy_nodes"] == [PROXY]
        assert written["inbound_owners"] == [[OUT_TOPIC.name, [PROXY]]]
        assert written["outbound_owners"] == [[IN_TOPIC.name, [PROXY]]]
        machine = json.loads((deployment.state_dir / "bridge-gpu.json").read_text())
        assert machine["node_name"] == "/fogros_dist/nodes_shown_gpu_bridge"
        assert machine["proxy_nodes"] == []

        expected = ({"rt" + OUT_TOPIC.name}, {"rt" + IN_TOPIC.name})
        assert view.wait(lambda v: _bridged(v.topics_of(PROXY)) == expected, timeout=20.0), view.rosters
        participant = view.participant_of(ROBOT_BRIDGE)
        assert participant is not None
        assert view.participant_of(PROXY) == participant
    finally:
        deployment.down()
        view.close()
    # Once the bridge is gone its participant, and with it both nodes, leave the graph.
    assert view_after_down(robot_domain)


def _bridged(topics: tuple[set[str], set[str]]) -> tuple[set[str], set[str]]:
    # An rclpy node (the bridge picks rclpy where ROS 2 is sourced) also publishes /parameter_events;
    # the node's bridged parameter services are services (rq/, rr/), not its topics.
    def topic(name: str) -> bool:
        return not name.startswith(("rq/", "rr/"))

    return {t for t in topics[0] - {"rt/parameter_events"} if topic(t)}, {t for t in topics[1] if topic(t)}


def view_after_down(robot_domain: int) -> bool:
    view = GraphView(robot_domain)
    try:
        view.poll()
        return not view.wait(lambda v: v.node(PROXY) is not None, timeout=1.0)
    finally:
        view.close()
