"""How a node is started on its machine: its command line, its environment, what reaches the screen.

The command line is the one ``ros2 launch`` gives a ``launch_ros`` Node (see
:class:`~fogros_dist.spec.NodeSpec`); the files a node ships lie in ``files/<process name>/``
under the machine's working directory, which the node finds in ``$FOGROS_DIST_NODE_FILES``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from fogros_dist.node_launcher import PREFIX_ENV
from fogros_dist.providers.base import OutputSink
from fogros_dist.spec import NodeSpec

__all__ = ["FILES_ENV", "files_dir", "node_arguments", "node_environment", "screen_sink"]

FILES_ENV = "FOGROS_DIST_NODE_FILES"


def files_dir(node: NodeSpec) -> str:
    """Where the node's shipped files go, relative to the machine's working directory."""
    return f"files/{node.process_name}"


def node_arguments(node: NodeSpec, parameter_paths: Mapping[str, str]) -> tuple[str, ...]:
    """The arguments after the executable, as launch_ros orders them.

    Args:
        node: the node.
        parameter_paths: each shipped file's path on the machine, by its name in ``node.files``.

    Returns:
        ``[*arguments, (--ros-args *ros_arguments), --ros-args, -r __node:=name, (-r __ns:=ns),
        --params-file F..., -p k:=v..., -r from:=to...]``.
    """
    args = list(node.arguments)
    if node.ros_arguments:
        args += ["--ros-args", *node.ros_arguments]
    args += ["--ros-args", "-r", f"__node:={node.name}"]
    if node.namespace:
        args += ["-r", f"__ns:={node.namespace}"]
    for name in node.parameter_files:
        args += ["--params-file", parameter_paths[name]]
    for key, value in node.parameters:
        text = str(value).lower() if isinstance(value, bool) else str(value)
        args += ["-p", f"{key}:={text}"]
    for source, target in node.remappings:
        args += ["-r", f"{source}:={target}"]
    return tuple(args)


def node_environment(node: NodeSpec, files_path: str | None) -> tuple[tuple[str, str], ...]:
    """The node's own variables on top of the machine's: ``env``, the files directory, the prefix."""
    env = dict(node.env)
    if files_path is not None:
        env[FILES_ENV] = files_path
    if node.prefix:
        env[PREFIX_ENV] = json.dumps(list(node.prefix))
    return tuple(env.items())


def screen_sink(node: NodeSpec, sink: OutputSink) -> OutputSink:
    """``sink`` for the lines ``node.output`` puts on the screen (launch's "log": stderr only)."""
    if node.output != "log":
        return sink

    def stderr_only(machine: str, name: str, stream: str, text: str) -> None:
        if stream == "stderr":
            sink(machine, name, "stderr", text)

    return stderr_only
