"""CloudNode resolves as launch_ros resolves a Node: run by a real LaunchService, in this process.

The deployment each launch collects is captured where it would start (``FogDeployment._start``),
so these tests see the NodeSpecs and the parameter files exactly as the engine would get them,
without provisioning anything. ``test_cloud_node_launch.py`` runs the whole thing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.ros
pytest.importorskip("rclpy")
pytest.importorskip("launch_ros")

from launch.actions import (  # noqa: E402
    GroupAction,
    IncludeLaunchDescription,
    SetLaunchConfiguration,
    TimerAction,
)
from launch.conditions import IfCondition, UnlessCondition  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from launch.substitutions import LaunchConfiguration  # noqa: E402
from launch_ros.actions import PushRosNamespace, SetParameter, SetRemap  # noqa: E402
from launch_ros.parameter_descriptions import ParameterFile  # noqa: E402

from fogros_dist.errors import ConfigError  # noqa: E402
from fogros_dist.launch import CloudNode, FogLaunchDescription  # noqa: E402
from fogros_dist.launch.actions import FogDeployment  # noqa: E402
from fogros_dist.machines import Local  # noqa: E402
from fogros_dist.spec import DeploymentSpec, NodeSpec  # noqa: E402
from launch import LaunchDescription, LaunchService  # noqa: E402


@dataclass(frozen=True)
class Collected:
    """A deployment as it would have started, and its nodes' shipped parameter files (parsed)."""

    spec: DeploymentSpec
    params: dict[str, list[Any]]

    def node(self, name: str) -> NodeSpec:
        return next(n for n in self.spec.nodes if n.name == name)


Launch = Callable[[Sequence[Any]], tuple[int, dict[str, Collected]]]


@pytest.fixture
def launch(monkeypatch: pytest.MonkeyPatch) -> Launch:
    """Run entities in a LaunchService; return its exit code and the deployments it collected."""
    collected: dict[str, Collected] = {}

    async def capture(self: FogDeployment, context: object, loop: object) -> None:
        del context, loop
        collector = self._collector  # the seam this test captures at
        spec = collector.close()
        params = {
            n.name: [
                yaml.safe_load(Path(f.source).read_text()) for f in n.files if f.name in n.parameter_files
            ]
            for n in spec.nodes
        }
        collector.cleanup()
        collected[spec.name] = Collected(spec=spec, params=params)

    monkeypatch.setattr(FogDeployment, "_start", capture)

    def run(entities: Sequence[Any]) -> tuple[int, dict[str, Collected]]:
        service = LaunchService()
        service.include_launch_description(LaunchDescription(list(entities)))
        return service.run(), collected

    return run


def _node(name: str | None = "planner", **kwargs: Any) -> CloudNode:
    return CloudNode(package="demo_pkg", executable="planner_node", name=name, machine=Local("gpu"), **kwargs)


def test_every_node_argument_reaches_the_spec(launch: Launch, tmp_path: Path) -> None:
    with_substs = tmp_path / "with_substs.yaml"
    with_substs.write_text("/robot1/planner:\n  ros__parameters:\n    speed: $(var speed)\n")
    plain = tmp_path / "plain.yaml"
    plain.write_text("/**:\n  ros__parameters:\n    mode: fast\n")
    node = _node(
        parameters=[
            {"gain": LaunchConfiguration("speed"), "limits": {"names": ["x", "y"]}},
            ParameterFile(str(with_substs), allow_substs=True),
            str(plain),
        ],
        remappings=[("in", "camera/image")],
        arguments=["--mode", LaunchConfiguration("speed")],
        ros_arguments=["--log-level", "debug"],
        env={"A": "1"},
        additional_env={"B": LaunchConfiguration("speed")},
        prefix="nice -n 5",
        respawn=LaunchConfiguration("respawn"),
        respawn_delay=2.0,
        respawn_max_retries=3,
        sigkill_timeout=7,
        output="screen",
        exec_name="planner-1",
        log_cmd=True,
        topics_in=["image:sensor_msgs/msg/Image"],
        topics_out=["/grasps"],
    )
    code, collected = launch(
        [
            SetLaunchConfiguration("speed", "3"),
            SetLaunchConfiguration("respawn", "true"),
            SetLaunchConfiguration("sigterm_timeout", "2"),
            FogLaunchDescription(
                [
                    GroupAction(
                        [
                            PushRosNamespace("robot1"),
                            SetRemap(src="/cmd", dst="/robot1/cmd"),
                            SetParameter(name="use_sim_time", value=True),
                            node,
                        ]
                    ),
                ],
                deployment="resolve-all",
            ),
        ]
    )
    assert code == 0
    spec = collected["resolve-all"].node("planner")
    assert (spec.namespace, spec.name, spec.machine) == ("/robot1", "planner", "gpu")
    assert (spec.package, spec.executable) == ("demo_pkg", "planner_node")
    assert spec.arguments == ("--mode", "3")
    assert spec.ros_arguments == ("--log-level", "debug")
    # SetRemap's rule comes first, as launch_ros orders them.
    assert spec.remappings == (("/cmd", "/robot1/cmd"), ("in", "camera/image"))
    assert spec.env == (("A", "1"), ("B", "3"))
    assert spec.prefix == ("nice", "-n", "5")
    assert (spec.respawn, spec.respawn_delay, spec.respawn_max_retries) == (True, 2.0, 3)
    assert (spec.sigterm_timeout, spec.sigkill_timeout) == (2.0, 7.0)
    assert (spec.output, spec.exec_name, spec.log_cmd) == ("screen", "planner-1", True)
    assert [t.name for t in spec.topics_in] == ["/robot1/image"]
    assert [t.name for t in spec.topics_out] == ["/grasps"]
    # Parameters in command-line order: SetParameter's, the dictionary, then the two files.
    assert collected["resolve-all"].params["planner"] == [
        {"/**": {"ros__parameters": {"use_sim_time": True}}},
        {"/robot1/planner": {"ros__parameters": {"gain": 3, "limits.names": ["x", "y"]}}},
        {"/robot1/planner": {"ros__parameters": {"speed": 3}}},
        {"/**": {"ros__parameters": {"mode": "fast"}}},
    ]


def test_conditions_decide_which_nodes_join(launch: Launch) -> None:
    code, collected = launch(
        [
            SetLaunchConfiguration("use_cloud", "false"),
            FogLaunchDescription(
                [
                    _node("always"),
                    _node("if_cloud", condition=IfCondition(LaunchConfiguration("use_cloud"))),
                    _node("unless_cloud", condition=UnlessCondition(LaunchConfiguration("use_cloud"))),
                ],
                deployment="conditions",
            ),
        ]
    )
    assert code == 0
    assert [n.name for n in collected["conditions"].spec.nodes] == ["always", "unless_cloud"]


def test_unnamed_deployments_never_collide(launch: Launch) -> None:
    code, collected = launch(
        [
            FogLaunchDescription([_node("a")]),
            FogLaunchDescription([_node("b")]),
            # Outside any FogLaunchDescription: this launch's own deployment.
            _node(None, parameters=[{"gain": 1}]),
        ]
    )
    assert code == 0
    assert len(collected) == 3
    assert all(name.startswith(f"launch-{os.getpid()}-") for name in collected)
    nodes = sorted(n.name for c in collected.values() for n in c.spec.nodes)
    assert nodes == ["a", "b", "planner_node"]
    # Without a name launch_ros writes a dictionary for every node ("/**"); so does CloudNode.
    unnamed = next(c for c in collected.values() if c.spec.nodes[0].name == "planner_node")
    assert unnamed.params["planner_node"] == [{"/**": {"ros__parameters": {"gain": 1}}}]


def test_cloud_nodes_in_included_files_join_the_right_deployment(launch: Launch, tmp_path: Path) -> None:
    plain = tmp_path / "plain.launch.py"
    plain.write_text(
        "from launch import LaunchDescription\n"
        "from launch.substitutions import LaunchConfiguration\n"
        "from fogros_dist.launch import CloudNode\n"
        "from fogros_dist.machines import Local\n"
        "def generate_launch_description():\n"
        "    return LaunchDescription([CloudNode(package='demo_pkg', executable='planner_node',\n"
        "        name='included', namespace=LaunchConfiguration('ns'), machine=Local('gpu'))])\n"
    )
    fog = tmp_path / "fog.launch.py"
    fog.write_text(
        "from fogros_dist.launch import CloudNode, FogLaunchDescription\n"
        "from fogros_dist.machines import Local\n"
        "def generate_launch_description():\n"
        "    return FogLaunchDescription([CloudNode(package='demo_pkg', executable='planner_node',\n"
        "        name='from_fog_file', machine=Local('gpu'))], deployment='from-include')\n"
    )
    code, collected = launch(
        [
            FogLaunchDescription(
                [
                    IncludeLaunchDescription(
                        PythonLaunchDescriptionSource(str(plain)), launch_arguments={"ns": "robot2"}.items()
                    ),
                    _node("direct"),
                ],
                deployment="with-include",
            ),
            IncludeLaunchDescription(PythonLaunchDescriptionSource(str(fog))),
        ]
    )
    assert code == 0
    assert sorted(collected) == ["from-include", "with-include"]
    with_include = collected["with-include"].spec
    assert [(n.namespace, n.name) for n in with_include.nodes] == [("/robot2", "included"), ("", "direct")]
    assert [n.name for n in collected["from-include"].spec.nodes] == ["from_fog_file"]


class _Errors(logging.Handler):
    """Keeps what launch reports at error level."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def launch_errors() -> Iterator[list[str]]:
    """The error lines launch prints (its logger does not propagate to pytest's capture)."""
    handler = _Errors()
    logging.getLogger("launch").addHandler(handler)
    yield handler.messages
    logging.getLogger("launch").removeHandler(handler)


def test_a_cloud_node_reached_after_its_deployment_started_fails_in_one_line(
    launch: Launch, launch_errors: list[str]
) -> None:
    code, collected = launch(
        [
            FogLaunchDescription(
                [_node("first"), TimerAction(period=0.2, actions=[_node("late")])], deployment="timer"
            )
        ]
    )
    errors = launch_errors
    assert code == 1
    assert [n.name for n in collected["timer"].spec.nodes] == ["first"]
    assert any(
        "CloudNode demo_pkg/planner_node was reached after deployment 'timer' started" in e for e in errors
    ), errors


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cwd": "/tmp"}, r"cwd= is not supported for a node on another machine: the node runs in"),
        ({"shell": True}, r"shell= is not supported for a node on another machine"),
        ({"on_exit": []}, r"on_exit= is not supported .*use respawn=, or handle DeploymentDown"),
        ({"emulate_tty": True}, r"emulate_tty= is not supported"),
        ({"respwn": True}, r"got an unknown argument respwn=: check its spelling"),
    ],
)
def test_what_cannot_apply_remotely_is_refused_by_name(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _node(**kwargs)


def test_a_missing_parameter_file_is_named(launch: Launch, launch_errors: list[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    code, collected = launch([FogLaunchDescription([_node(parameters=[str(missing)])], deployment="nofile")])
    assert code == 1
    assert collected == {}
    assert any(f"CloudNode /planner: parameter file '{missing}' does not exist" in e for e in launch_errors)
