"""Services, actions and parameter services in the plan and in deployment files: validated in one
line before anything starts, expanded into what each bridge carries."""

from __future__ import annotations

from pathlib import Path

import pytest

from fogros_dist.deploy.file import load_deployment_file
from fogros_dist.deploy.plan import make_plan
from fogros_dist.errors import ConfigError
from fogros_dist.spec import ActionSpec, DeploymentSpec, MachineSpec, NodeSpec, ServiceSpec

FIB = "example_interfaces/action/Fibonacci"
ADD = "example_interfaces/srv/AddTwoInts"


def _spec(*nodes: NodeSpec) -> DeploymentSpec:
    return DeploymentSpec(
        name="svc", machines=(MachineSpec(name="gpu"), MachineSpec(name="cpu")), nodes=nodes
    )


def _node(name: str = "planner", machine: str = "gpu", **kwargs: object) -> NodeSpec:
    return NodeSpec(name=name, package="p", executable="e", machine=machine, **kwargs)  # type: ignore[arg-type]


def test_toml_services_and_actions_expand_per_machine(tmp_path: Path) -> None:
    path = tmp_path / "deploy.toml"
    path.write_text(
        'name = "svc"\n[[machines]]\nname = "gpu"\n[[nodes]]\nname = "planner"\nnamespace = "/arm"\n'
        'package = "p"\nexecutable = "e"\nmachine = "gpu"\n'
        f'services = ["plan:{ADD}", {{ name = "/reset", type = "std_srvs/srv/Trigger", timeout = 2.5 }}]\n'
        f'actions = [{{ name = "~/move", type = "{FIB}", result_timeout = 60 }}]\n'
        'robot_services = ["/robot/stop"]\n'
    )
    spec = load_deployment_file(path)
    node = spec.nodes[0]
    assert node.services == (
        ServiceSpec(name="/arm/plan", type=ADD),
        ServiceSpec(name="/reset", type="std_srvs/srv/Trigger", timeout=2.5),
    )
    assert node.actions == (ActionSpec(name="/arm/planner/move", type=FIB, result_timeout=60.0),)
    (machine,) = make_plan(spec).machines
    served = {s.name: s for s in machine.services}
    move = "/arm/planner/move/_action"
    assert served[f"{move}/send_goal"].type == f"{FIB}_SendGoal"
    assert served[f"{move}/cancel_goal"].type == "action_msgs/srv/CancelGoal"
    assert served[f"{move}/get_result"].timeout == 60.0
    assert served["/arm/planner/get_parameters"].type == "rcl_interfaces/srv/GetParameters"
    assert len([n for n in served if n.startswith("/arm/planner/") and "_action" not in n]) == 6
    assert [s.name for s in machine.robot_services] == ["/robot/stop"]
    # Feedback and status come back from the action server's side.
    assert {t.name for t in machine.outbound} == {f"{move}/feedback", f"{move}/status"}


def test_robot_actions_flow_the_other_way_and_parameters_can_stay_off() -> None:
    node = _node(robot_actions=(ActionSpec(name="/dock", type=FIB),), bridge_parameters=False)
    plan = make_plan(_spec(node))
    gpu = plan.machines[0]
    assert gpu.services == ()
    assert [s.name for s in gpu.robot_services] == [
        "/dock/_action/send_goal",
        "/dock/_action/cancel_goal",
        "/dock/_action/get_result",
    ]
    assert {t.name for t in gpu.inbound} == {"/dock/_action/feedback", "/dock/_action/status"}
    assert plan.robot_local_services == gpu.robot_services
    assert plan.robot_remote_services == ()


@pytest.mark.parametrize(
    ("nodes", "match"),
    [
        ((_node(services=(ServiceSpec(name="/x", type="std_msgs/msg/String"),)),), "is not a service type"),
        ((_node(actions=(ActionSpec(name="/x", type=ADD),)),), "is not an action type"),
        ((_node(services=(ServiceSpec(name="/bad name"),)),), "bad name"),
        (
            (_node(services=(ServiceSpec(name="/x"), ServiceSpec(name="/x"))),),
            "service /x is served by node '/planner' twice",
        ),
        (
            (_node(services=(ServiceSpec(name="/planner/get_parameters"),)),),
            "service /planner/get_parameters is served by node '/planner' twice",
        ),
        (
            (_node(services=(ServiceSpec(name="/x"),), robot_services=(ServiceSpec(name="/x"),)),),
            "both served by the node and called on the robot",
        ),
        (
            (
                _node(services=(ServiceSpec(name="/x"),)),
                _node(name="other", machine="cpu", services=(ServiceSpec(name="/x"),)),
            ),
            "served by nodes on two machines",
        ),
        (
            (
                _node(services=(ServiceSpec(name="/x"),)),
                _node(name="other", machine="cpu", robot_services=(ServiceSpec(name="/x"),)),
            ),
            "served on machine 'gpu' and called on the robot",
        ),
    ],
)
def test_bad_services_fail_in_one_line(nodes: tuple[NodeSpec, ...], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_plan(_spec(*nodes))
