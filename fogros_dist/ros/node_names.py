"""ROS 2 node names: rmw's rules, full names ``/namespace/name``, and the names of our own nodes.

A node's full name is its namespace joined with its base name (``/perception/grasp_planner``, or
``/grasp_planner`` in the root namespace); ``ros2 node list`` prints exactly that. The rules are
rmw's ``rmw_validate_node_name`` and ``rmw_validate_namespace``.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass

from fogros_dist.errors import ConfigError

__all__ = [
    "MAX_NODE_NAME_LENGTH",
    "NodeName",
    "bridge_node_name",
    "default_node_name",
    "full_node_name",
    "parse_node_name",
]

# rmw's RMW_NODE_NAME_MAX_NAME_LENGTH; a namespace may be as long (RMW_NAMESPACE_MAX_LENGTH).
MAX_NODE_NAME_LENGTH = 255

_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NOT_NAME_CHAR = re.compile(r"[^A-Za-z0-9_]+")
# Graphs that pick their own name count per process, so two in one process never collide.
_default_ids = itertools.count()


@dataclass(frozen=True, kw_only=True)
class NodeName:
    """A checked ROS 2 node name.

    Attributes:
        namespace: the absolute namespace, ``/`` for the root namespace.
        name: the base name, without namespace.
    """

    namespace: str
    name: str

    @property
    def full(self) -> str:
        """``/namespace/name`` (``/name`` in the root namespace), as ``ros2 node list`` prints it."""
        return f"{self.namespace.rstrip('/')}/{self.name}"


def parse_node_name(text: str) -> NodeName:
    """Split and check a node name: ``/ns/name``, ``/name``, or a bare ``name`` (root namespace).

    Raises:
        ConfigError: a part breaks rmw's node-name or namespace rules; the message names the part
            and the fix.
    """
    if not text.startswith("/") and "/" in text:
        msg = f"node name {text!r} is relative: give the full name, e.g. '/{text}'"
        raise ConfigError(msg)
    namespace, _, name = text.rpartition("/")
    return NodeName(namespace=_check_namespace(namespace or "/", text), name=_check_name(name, text))


def full_node_name(*, namespace: str, name: str) -> str:
    """The full name of a node called ``name`` in ``namespace`` ("" or "/" is the root namespace).

    Raises:
        ConfigError: as :func:`parse_node_name`.
    """
    if namespace and not namespace.startswith("/"):
        msg = f"namespace {namespace!r} of node {name!r} is relative: use '/{namespace}'"
        raise ConfigError(msg)
    return parse_node_name(f"{namespace.rstrip('/')}/{name}").full


def bridge_node_name(deployment: str, *, machine: str = "") -> str:
    """The node name a deployment's bridge has on its graph: ``/fogros_dist/<deployment>_bridge``.

    ROS names allow only letters, digits and '_' (deployment names also have '-'), so every other
    character becomes '_'.

    Args:
        deployment: the deployment name.
        machine: for a machine's bridge, the machine (``/fogros_dist/<deployment>_<machine>_bridge``).

    Returns:
        A valid full node name.
    """
    parts = [deployment, machine, "bridge"] if machine else [deployment, "bridge"]
    base = _NOT_NAME_CHAR.sub("_", "_".join(parts))
    base = re.sub("_+", "_", base).strip("_") or "bridge"
    if base[0].isdigit():
        base = f"deployment_{base}"  # a ROS name must not start with a digit
    return f"/fogros_dist/{base[:MAX_NODE_NAME_LENGTH]}"


def default_node_name() -> str:
    """A node name unique in this process: ``fogros_dist_<pid>_<n>``."""
    return f"fogros_dist_{os.getpid()}_{next(_default_ids)}"


def _check_name(name: str, text: str) -> str:
    if not name:
        msg = f"node name {text!r} has no base name: end it with the node's name, e.g. '/ns/talker'"
        raise ConfigError(msg)
    if len(name) > MAX_NODE_NAME_LENGTH:
        msg = f"node name {name!r} is {len(name)} characters long: use at most {MAX_NODE_NAME_LENGTH}"
        raise ConfigError(msg)
    if not _TOKEN.fullmatch(name):
        msg = (
            f"node name {name!r} (in {text!r}) is invalid: use letters, digits and '_', "
            f"not starting with a digit (e.g. {_suggest(name)!r})"
        )
        raise ConfigError(msg)
    return name


def _check_namespace(namespace: str, text: str) -> str:
    if namespace == "/":
        return namespace
    if len(namespace) > MAX_NODE_NAME_LENGTH:
        msg = f"namespace of node {text!r} is {len(namespace)} characters long: use at most 255"
        raise ConfigError(msg)
    for token in namespace[1:].split("/"):
        if not _TOKEN.fullmatch(token):
            msg = (
                f"namespace of node {text!r} has an invalid part {token!r}: use letters, digits and "
                f"'_', not starting with a digit (e.g. {_suggest(token)!r})"
            )
            raise ConfigError(msg)
    return namespace


def _suggest(token: str) -> str:
    fixed = re.sub("_+", "_", _NOT_NAME_CHAR.sub("_", token)).strip("_") or "node"
    return f"n{fixed}" if fixed[0].isdigit() else fixed
