"""`up` wires services: the robot bridge serves each offloaded node's services (here its parameter
services) owned by that node's stand-in, the machine bridge answers them from the node's graph,
and a call from the robot's graph reaches the machine and comes back.

A real deployment on the Local provider. Where ROS 2 is sourced the offloaded edge_detector is an
rclpy node, whose parameter services answer the robot's call; without it, it runs on the DDS adapter
and serves no parameters, so the call gets no answer and both bridges say why in their stats.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import time
from pathlib import Path

from e2e_helpers import edge_deployment
from ros_graph_view import GraphView

from fogros_dist.deploy.engine import Deployment
from fogros_dist.deploy.state import StateStore
from fogros_dist.net.stats import read_stats
from fogros_dist.ros.dds import DdsGraph
from fogros_dist.ros.parameters import PARAMETER_SERVICES
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import MachineSpec, ServiceSpec

PROXY = "/vision/edges"
LIST = ServiceSpec(name=f"{PROXY}/list_parameters", type="rcl_interfaces/srv/ListParameters", timeout=2.0)


def _entry(stats_path: Path, name: str) -> dict[str, object]:
    (entry,) = [s for s in read_stats(stats_path).get("services", []) if s["service"] == name]
    return dict(entry)


def test_parameter_services_are_served_on_the_robot_by_the_offloaded_node(
    tmp_path: Path, robot_domain: int
) -> None:
    spec = edge_deployment("services-wired", MachineSpec(name="gpu"))
    spec = dataclasses.replace(spec, nodes=(dataclasses.replace(spec.nodes[0], namespace="/vision"),))
    names = {f"{PROXY}/{service}" for service, _type in PARAMETER_SERVICES}
    view = GraphView(robot_domain)
    deployment = Deployment(spec, store=StateStore(tmp_path / "home"), robot_domain_id=robot_domain)
    types = MessageTypes("jazzy")
    app = DdsGraph(robot_domain, types=types)
    try:
        deployment.up()
        robot = json.loads((deployment.state_dir / "bridge-robot.json").read_text())
        machine = json.loads((deployment.state_dir / "bridge-gpu.json").read_text())
        assert {s["name"] for s in robot["remote_services"]} == names
        assert {s["name"] for s in machine["local_services"]} == names
        assert robot["local_services"] == machine["remote_services"] == []
        assert sorted(robot["service_owners"]) == sorted([name, [PROXY]] for name in names)
        assert dict(robot["service_machines"]) == dict.fromkeys(names, "gpu")

        # On the robot's graph the offloaded node owns each service's request reader.
        wanted = {f"rq{name}Request" for name in names}
        assert view.wait(lambda v: wanted <= v.topics_of(PROXY)[1], timeout=20.0), view.rosters

        client = app.service_client(LIST)
        deadline = time.monotonic() + 20.0
        while not client.server_ready():
            assert time.monotonic() < deadline, "the robot bridge does not serve list_parameters"
            time.sleep(0.05)
        request = types.serialize(
            f"{LIST.type}_Request", types.message_class(f"{LIST.type}_Request")(prefixes=[], depth=0)
        )
        answer = client.call(request, 4.0)
        robot_stats = Path(robot["stats_path"])
        machine_stats = Path(machine["stats_path"])
        if importlib.util.find_spec("rclpy") is not None:
            # An rclpy node: its own list_parameters answers, through both bridges.
            assert answer is not None
            listed = types.deserialize(f"{LIST.type}_Response", answer).result.names
            assert "use_sim_time" in listed, listed
            deadline = time.monotonic() + 10.0
            while _entry(robot_stats, LIST.name)["answered"] != 1:
                assert time.monotonic() < deadline, _entry(robot_stats, LIST.name)
                time.sleep(0.1)
            return
        # edge_detector (DDS adapter) has no parameter services: the call crosses, finds no server
        # there, and the robot's client gets no answer.
        assert answer is None
        deadline = time.monotonic() + 10.0
        while _entry(robot_stats, LIST.name)["errors"] != 1:
            assert time.monotonic() < deadline, _entry(robot_stats, LIST.name)
            time.sleep(0.1)
        assert _entry(machine_stats, LIST.name)["timed_out"] == 1
    finally:
        app.close()
        deployment.down()
        view.close()
