"""A user's own colcon workspace, written by the test: the packages a lab would offload.

``greeter`` (ament_python) has a node that answers each ``std_msgs/String`` on ``/greet/in`` with
``<PREFIX>, <data>`` on ``/greet/out``, where PREFIX comes from ``greet_words``, another package of
the workspace it depends on; ``unrelated`` is in the workspace but no node needs it. The node
speaks through fogros_dist's DDS adapter, so it runs where ROS 2 is absent. Importable as
``workspace_helpers`` from any test (``test/`` is on sys.path) and from bench scripts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from fogros_dist.spec import DeploymentSpec, MachineSpec, NodeSpec, TopicSpec

__all__ = [
    "GREETING_PREFIX",
    "GREET_IN",
    "GREET_OUT",
    "PREFIX",
    "colcon_build",
    "greet_round_trip",
    "greeter_deployment",
    "python_package",
    "ros_user_workspace",
    "user_workspace",
]

PREFIX = "hello from the cloud"
STRING = "std_msgs/msg/String"
GREET_IN = TopicSpec(name="/greet/in", type=STRING)
GREET_OUT = TopicSpec(name="/greet/out", type=STRING)

_PACKAGE_XML = """\
<?xml version="1.0"?>
<package format="3">
  <name>{name}</name>
  <version>0.1.0</version>
  <description>{name}: part of a test workspace</description>
  <maintainer email="lab@example.org">lab</maintainer>
  <license>Apache-2.0</license>
{depends}
  <export><build_type>ament_python</build_type></export>
</package>
"""

_SETUP_PY = """\
from setuptools import setup

setup(
    name={name!r},
    version="0.1.0",
    packages=[{name!r}],
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/{name}"]),
        ("share/{name}", ["package.xml"]),
    ],
    entry_points={{"console_scripts": {scripts!r}}},
)
"""

_GREETER = '''\
"""Answers /greet/in with a greeting on /greet/out (fogros_dist's DDS adapter, no rclpy)."""

import sys

from greet_words import PREFIX

from fogros_dist.nodes.runtime import NodeContext, guarded, run_node
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import TopicSpec

STRING = "std_msgs/msg/String"


def setup(ctx: NodeContext) -> None:
    types = MessageTypes(ctx.distro)
    string = types.message_class(STRING)
    out = ctx.graph.publisher(TopicSpec(name=ctx.args.topic("/greet/out"), type=STRING))

    def on_name(cdr: bytes) -> None:
        name = types.deserialize(STRING, cdr).data
        out.publish(types.serialize(STRING, string(data=f"{PREFIX}, {name}")))

    topic = ctx.args.topic("/greet/in")
    ctx.graph.subscribe(TopicSpec(name=topic, type=STRING), guarded(ctx.log, topic, on_name))


def main() -> int:
    return run_node("greeter", setup)


if __name__ == "__main__":
    sys.exit(main())
'''


def python_package(
    root: Path,
    name: str,
    *,
    modules: dict[str, str],
    depends: tuple[str, ...] = (),
    scripts: tuple[str, ...] = (),
) -> Path:
    """An ament_python package ``root/name`` with ``modules`` (file name -> source) in its Python
    package and ``scripts`` (``"exe = module:function"``) installed in ``lib/<name>``."""
    package = root / name
    (package / name).mkdir(parents=True, exist_ok=True)
    (package / "resource").mkdir(exist_ok=True)
    (package / "resource" / name).write_text("")
    tags = "".join(f"  <exec_depend>{dep}</exec_depend>\n" for dep in depends)
    (package / "package.xml").write_text(_PACKAGE_XML.format(name=name, depends=tags.rstrip("\n")))
    (package / "setup.py").write_text(_SETUP_PY.format(name=name, scripts=list(scripts)))
    (package / "setup.cfg").write_text(
        f"[develop]\nscript_dir=$base/lib/{name}\n[install]\ninstall_scripts=$base/lib/{name}\n"
    )
    (package / name / "__init__.py").write_text(modules.pop("__init__.py", ""))
    for filename, source in modules.items():
        (package / name / filename).write_text(source)
    return package


def user_workspace(root: Path) -> Path:
    """The workspace described in the module docstring, under ``root/src``; returns ``root``."""
    src = root / "src"
    python_package(src / "words", "greet_words", modules={"__init__.py": f"PREFIX = {PREFIX!r}\n"})
    python_package(
        src,
        "greeter",
        modules={"node.py": _GREETER},
        depends=("greet_words", "std_msgs"),
        scripts=("greeter_node = greeter.node:main",),
    )
    python_package(src, "unrelated", modules={"__init__.py": "BIG = 1\n"})
    # Data no node needs, in the unrelated package: it must not travel.
    (src / "unrelated" / "unrelated" / "blob.bin").write_bytes(os.urandom(200_000))
    return root


def colcon_build(root: Path, *, env: dict[str, str] | None = None, python: str = "") -> Path:
    """``colcon build`` the workspace on the robot (as a user does before `ros2 launch`); returns
    its install base. The colcon on ``env``'s PATH (a ROS 2 installation's), else .venv's;
    ``python`` is the interpreter CMake gives rosidl's generators (ROS 2's: pyenv's python3 comes
    first on this machine's PATH, where Ubuntu's would be /usr/bin/python3)."""
    environ = env or dict(os.environ)
    colcon = shutil.which("colcon", path=environ.get("PATH")) or str(Path(sys.executable).with_name("colcon"))
    cmake = ["--cmake-args", f"-DPython3_EXECUTABLE={python}"] if python else []
    done = subprocess.run(
        [colcon, "build", *cmake],
        cwd=root,
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return root / "install"


def greeter_deployment(name: str, machine: MachineSpec, *, workspace: str = "") -> DeploymentSpec:
    """greeter on ``machine``: /greet/in there, /greet/out back."""
    return DeploymentSpec(
        name=name,
        machines=(machine,),
        nodes=(
            NodeSpec(
                name="greeter",
                package="greeter",
                executable="greeter_node",
                machine=machine.name,
                topics_in=(GREET_IN,),
                topics_out=(GREET_OUT,),
                env=(("FOGROS_DIST_GRAPH", "dds"),),
            ),
        ),
        workspace=workspace,
    )


def greet_round_trip(robot_domain: int, who: str = "robot", *, timeout: float = 30.0) -> str:
    """Publish ``who`` on /greet/in (robot side) until a greeting comes back; return it."""
    from fogros_dist.ros.dds import DdsGraph
    from fogros_dist.ros.types import MessageTypes

    types = MessageTypes("jazzy")
    string: Any = types.message_class(STRING)
    got = threading.Event()
    replies: list[str] = []

    def on_reply(cdr: bytes) -> None:
        replies.append(types.deserialize(STRING, cdr).data)
        got.set()

    graph = DdsGraph(robot_domain, distro="jazzy")
    try:
        pub = graph.publisher(GREET_IN)
        graph.subscribe(GREET_OUT, on_reply)
        deadline = time.monotonic() + timeout
        while not got.wait(0.2):
            assert time.monotonic() < deadline, f"no reply on {GREET_OUT.name}"
            pub.publish(types.serialize(STRING, string(data=who)))
    finally:
        graph.close()
    return replies[0]


# -- ROS 2 lane: an ament_cmake message package and an rclpy node that uses it -------------------

GREETING_PREFIX = "hello from a ROS 2 message"

_MSG_PACKAGE_XML = """\
<?xml version="1.0"?>
<package format="3">
  <name>greet_msgs</name>
  <version>0.1.0</version>
  <description>Messages of a test workspace</description>
  <maintainer email="lab@example.org">lab</maintainer>
  <license>Apache-2.0</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
"""

_MSG_CMAKELISTS = """\
cmake_minimum_required(VERSION 3.8)
project(greet_msgs)
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
rosidl_generate_interfaces(${PROJECT_NAME} "msg/Greeting.msg")
ament_package()
"""

_RCLPY_GREETER = '''\
"""Answers /greet/in with a greeting built from a greet_msgs/Greeting (rclpy)."""

import rclpy
from greet_msgs.msg import Greeting
from rclpy.node import Node
from std_msgs.msg import String


class Greeter(Node):
    def __init__(self) -> None:
        super().__init__("greeter")
        self.out = self.create_publisher(String, "/greet/out", 10)
        self.create_subscription(String, "/greet/in", self.on_name, 10)

    def on_name(self, msg: String) -> None:
        greeting = Greeting(prefix=Greeting.DEFAULT_PREFIX, name=msg.data)
        self.out.publish(String(data=f"{greeting.prefix}, {greeting.name}"))


def main() -> None:
    rclpy.init()
    node = Greeter()
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
'''


def ros_user_workspace(root: Path) -> Path:
    """A ROS 2 workspace under ``root/src``: ``greet_msgs`` (ament_cmake, one message),
    ``greeter_ros`` (ament_python, an rclpy node using it) and ``unrelated``; returns ``root``."""
    src = root / "src"
    msgs = src / "greet_msgs"
    (msgs / "msg").mkdir(parents=True)
    (msgs / "package.xml").write_text(_MSG_PACKAGE_XML)
    (msgs / "CMakeLists.txt").write_text(_MSG_CMAKELISTS)
    (msgs / "msg" / "Greeting.msg").write_text(
        f'string DEFAULT_PREFIX="{GREETING_PREFIX}"\nstring prefix\nstring name\n'
    )
    python_package(
        src,
        "greeter_ros",
        modules={"node.py": _RCLPY_GREETER},
        depends=("rclpy", "std_msgs", "greet_msgs"),
        scripts=("greeter = greeter_ros.node:main",),
    )
    python_package(src, "unrelated", modules={"__init__.py": "BIG = 1\n"})
    return root
