"""The subset of ``--ros-args`` that fogros_dist's own nodes honour without rclpy.

``-r from:=to`` remaps topics, ``-r __node:=name`` renames the node, ``-p name:=value`` sets a
parameter. This lets the same node run under rclpy or on the Cyclone DDS adapter alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from fogros_dist.errors import ConfigError

__all__ = ["RosArgs", "parse_ros_args"]


@dataclass(frozen=True, kw_only=True)
class RosArgs:
    """Parsed ``--ros-args``: the node name, topic remappings, parameters, and other arguments."""

    node_name: str | None = None
    remappings: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)
    rest: tuple[str, ...] = ()

    def topic(self, default: str) -> str:
        """The topic name ``default`` is remapped to (itself if not remapped)."""
        return self.remappings.get(default, self.remappings.get(default.lstrip("/"), default))

    def param(self, name: str, default: str) -> str:
        """A parameter's value as text, or ``default``."""
        return self.parameters.get(name, default)


def parse_ros_args(argv: Sequence[str]) -> RosArgs:
    """Split ``argv`` into node arguments and the ``--ros-args`` section; ConfigError on bad rules."""
    rest: list[str] = []
    remaps: dict[str, str] = {}
    params: dict[str, str] = {}
    node_name = None
    in_ros = False
    items = iter(argv)
    for item in items:
        if item == "--ros-args":
            in_ros = True
            continue
        if item == "--":
            in_ros = False
            continue
        if not in_ros:
            rest.append(item)
            continue
        if item in ("-r", "--remap", "-p", "--param"):
            rule = next(items, "")
            key, sep, value = rule.partition(":=")
            if not sep or not key:
                msg = f"ros argument {item} {rule!r} is malformed: use {item} name:=value"
                raise ConfigError(msg)
            if item in ("-p", "--param"):
                params[key] = value
            elif key == "__node":
                node_name = value
            else:
                remaps[key] = value
    return RosArgs(node_name=node_name, remappings=remaps, parameters=params, rest=tuple(rest))
