"""ROS 2 topic and message type names, and how they map onto DDS and Zenoh.

The rules are the ROS 2 design article "Topic and Service name mapping to DDS" plus rmw's length
limit. The bridge only carries fully qualified (absolute) names: a relative name or a ``~``
private name depends on the node that resolves it, and the bridge has no such node.
"""

from __future__ import annotations

import re
from typing import NoReturn

from fogros_dist.errors import InvalidTopicName, UnknownMessageType

__all__ = [
    "MAX_TOPIC_NAME_LENGTH",
    "dds_topic_name",
    "dds_type_name",
    "ros_type_name",
    "validate_topic_name",
    "validate_type_name",
    "zenoh_key",
]

# rmw: 255 (DDS implementation limit) minus 8 reserved for prefixes such as "rt/".
MAX_TOPIC_NAME_LENGTH = 247

_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BAD_CHAR = re.compile(r"[^A-Za-z0-9_/]")
_TYPE_PART = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_KINDS = ("msg", "srv", "action")
_DDS_TYPE = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)::(msg|srv|action)::dds_::([A-Za-z][A-Za-z0-9_]*)_$")


def validate_topic_name(name: str) -> str:
    """Check that ``name`` is an absolute ROS 2 topic name the bridge can carry.

    Args:
        name: the topic name, e.g. ``/camera/depth``.

    Returns:
        ``name`` unchanged, so the call can be used inline.

    Raises:
        InvalidTopicName: one line naming the bad value, the rule it breaks and the fix.
    """
    if not name:
        _bad(name, "is empty", "give an absolute name such as '/chatter'")
    if name.startswith("~"):
        _bad(name, "is a private (~) name, which only a node can resolve", "use the absolute name")
    if "{" in name or "}" in name:
        _bad(name, "contains a {substitution}", "use the resolved absolute name")
    if not name.startswith("/"):
        _bad(name, "is relative: the bridge carries absolute names only", f"use '/{name}'")
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        _bad(name, f"is {len(name)} characters long", f"use at most {MAX_TOPIC_NAME_LENGTH}")
    bad_char = _BAD_CHAR.search(name)
    if bad_char:
        _bad(
            name,
            f"contains {bad_char.group()!r}: only letters, digits, '_' and '/' are allowed",
            "replace it with '_'",
        )
    if name == "/":
        _bad(name, "is the root namespace, not a topic", "add a name such as '/chatter'")
    if name.endswith("/"):
        _bad(name, "ends with '/'", f"use {name.rstrip('/')!r}")
    if "//" in name:
        _bad(name, "contains '//'", f"use {re.sub('/+', '/', name)!r}")
    if "__" in name:
        _bad(name, "contains '__' (reserved by ROS 2)", f"use {re.sub('_+', '_', name)!r}")
    for token in name[1:].split("/"):
        if not _TOKEN.fullmatch(token):
            _bad(name, f"has token {token!r} starting with a digit", f"rename it, e.g. 'n{token}'")
    return name


def dds_topic_name(name: str) -> str:
    """The DDS topic a ROS 2 topic uses: ``/chatter`` -> ``rt/chatter`` (rmw's ROS topic prefix).

    Raises:
        InvalidTopicName: ``name`` is not a valid absolute topic name.
    """
    return "rt" + validate_topic_name(name)


def zenoh_key(name: str) -> str:
    """The Zenoh key for a topic, as zenoh-bridge-ros2dds names it: ``/a/b`` -> ``a/b``.

    Raises:
        InvalidTopicName: ``name`` is not a valid absolute topic name.
    """
    return validate_topic_name(name)[1:]


def validate_type_name(type_name: str) -> str:
    """Check that ``type_name`` has the ROS 2 form ``pkg/msg/Type`` (or ``pkg/srv/...``,
    ``pkg/action/...`` for the messages services and actions are made of).

    Only the shape is checked here; whether a distribution defines the type is
    :meth:`fogros_dist.ros.types.MessageTypes.resolve`'s job.

    Returns:
        ``type_name`` unchanged.

    Raises:
        UnknownMessageType: the name is not of the form ``pkg/msg/Type``.
    """
    parts = type_name.split("/")
    if len(parts) == 2 and all(_TYPE_PART.fullmatch(p) for p in parts):
        msg = f"message type {type_name!r} lacks its interface kind: use '{parts[0]}/msg/{parts[1]}'"
        raise UnknownMessageType(msg)
    # srv and action kinds: a service's request/response messages (``pkg/srv/T_Request``) and an
    # action's generated messages (``pkg/action/T_FeedbackMessage`` rides on a topic).
    if len(parts) != 3 or parts[1] not in _KINDS or not all(_TYPE_PART.fullmatch(p) for p in parts):
        msg = (
            f"message type {type_name!r} is malformed: use 'package/msg/Type' "
            "(letters, digits and '_'), e.g. 'std_msgs/msg/String'"
        )
        raise UnknownMessageType(msg)
    return type_name


def dds_type_name(type_name: str) -> str:
    """The DDS type name rmw uses for a ROS 2 type: ``pkg/msg/T`` -> ``pkg::msg::dds_::T_``.

    Raises:
        UnknownMessageType: the name is not of the form ``pkg/msg/Type``.
    """
    pkg, kind, name = validate_type_name(type_name).split("/")
    return f"{pkg}::{kind}::dds_::{name}_"


def ros_type_name(dds_name: str) -> str | None:
    """The ROS 2 type name for a DDS type name: ``pkg::msg::dds_::T_`` -> ``pkg/msg/T``.

    Returns:
        The ROS 2 name, or None when ``dds_name`` is not a type that rmw would have named.
    """
    match = _DDS_TYPE.match(dds_name)
    if match is None:
        return None
    return f"{match.group(1)}/{match.group(2)}/{match.group(3)}"


def _bad(name: str, rule: str, fix: str) -> NoReturn:
    msg = f"topic name {name!r} {rule}: {fix}"
    raise InvalidTopicName(msg)
