"""ROS 2 interface definitions (``.msg``, ``.srv``, ``.action``, ``.idl`` text) as ``rosbags`` types.

A service ``pkg/srv/T`` is carried as the messages rmw puts on the wire, ``pkg/srv/T_Request`` and
``pkg/srv/T_Response``; an action ``pkg/action/T`` as the messages rosidl generates for it
(rosidl_parser ``definition.Action``): ``T_Goal``, ``T_Result``, ``T_Feedback``,
``T_SendGoal_Request`` (``goal_id``, ``goal``), ``T_SendGoal_Response`` (``accepted``,
``stamp``), ``T_GetResult_Request`` (``goal_id``), ``T_GetResult_Response`` (``status``,
``result``) and ``T_FeedbackMessage`` (``goal_id``, ``feedback``). Nothing here reads files.
"""

from __future__ import annotations

import re
from typing import Any

from rosbags.interfaces import Nodetype
from rosbags.typesys import TypesysError, get_types_from_idl, get_types_from_msg

from fogros_dist.errors import ConfigError, UnknownMessageType
from fogros_dist.spec import InterfaceDef

__all__ = [
    "ACTION_MESSAGE_SUFFIXES",
    "SERVICE_MESSAGE_SUFFIXES",
    "interface_of",
    "referenced_types",
    "split_interface_name",
    "types_of",
]

SERVICE_MESSAGE_SUFFIXES = ("_Request", "_Response")
# Longest first, so that ``T_SendGoal_Request`` is not read as an action ``T_SendGoal``.
ACTION_MESSAGE_SUFFIXES = (
    "_SendGoal_Request",
    "_SendGoal_Response",
    "_GetResult_Request",
    "_GetResult_Response",
    "_FeedbackMessage",
    "_Feedback",
    "_Result",
    "_Goal",
)
_KINDS = ("msg", "srv", "action")
_PART = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# rosidl_adapter splits .srv and .action files on lines that are exactly '---'.
_SEPARATOR = re.compile(r"^---[ \t]*$", re.MULTILINE)
# rosbags' IDL grammar has no preprocessor; rosidl's generated .idl files only #include.
_PREPROCESSOR = re.compile(r"^[ \t]*#.*$", re.MULTILINE)
# rosidl gives an empty structure this member, so it is on the wire and in the type hash.
_EMPTY_MEMBER = ("structure_needs_at_least_one_member", (Nodetype.BASE, ("uint8", 0)))
_UUID = "unique_identifier_msgs/msg/UUID"
_TIME = "builtin_interfaces/msg/Time"

Typesdict = dict[str, tuple[list[Any], list[Any]]]


def split_interface_name(name: str) -> tuple[str, str, str]:
    """``pkg/kind/T`` as ``(pkg, kind, T)``.

    Raises:
        UnknownMessageType: the name is not ``pkg/msg|srv|action/T``.
    """
    parts = name.split("/")
    if len(parts) != 3 or parts[1] not in _KINDS or not all(_PART.fullmatch(p) for p in parts):
        msg = (
            f"interface name {name!r} is malformed: use 'package/msg/Type', 'package/srv/Type' or "
            "'package/action/Type'"
        )
        raise UnknownMessageType(msg)
    return parts[0], parts[1], parts[2]


def interface_of(type_name: str) -> str:
    """The interface a message type belongs to: ``pkg/srv/T_Request`` -> ``pkg/srv/T``,
    ``pkg/action/T_FeedbackMessage`` -> ``pkg/action/T``, ``pkg/msg/T`` -> itself.

    Raises:
        UnknownMessageType: the name is malformed.
    """
    pkg, kind, leaf = split_interface_name(type_name)
    suffixes = {"srv": SERVICE_MESSAGE_SUFFIXES, "action": ACTION_MESSAGE_SUFFIXES}.get(kind, ())
    for suffix in suffixes:
        if leaf.endswith(suffix) and len(leaf) > len(suffix):
            return f"{pkg}/{kind}/{leaf[: -len(suffix)]}"
    return type_name


def types_of(definition: InterfaceDef) -> Typesdict:
    """The rosbags type definitions ``definition`` stands for (every message it makes).

    Raises:
        ConfigError: the text does not parse, or does not have the parts its kind needs.
    """
    pkg, kind, leaf = split_interface_name(definition.name)
    if definition.format == "idl":
        found = _parse_idl(definition)
        if kind == "action":
            found.update(_action_derived(pkg, leaf))
        return found
    if definition.format != kind:
        msg = (
            f"interface {definition.name!r} has format {definition.format!r}: a {kind} interface "
            f"is a .{kind} or .idl file"
        )
        raise ConfigError(msg)
    if kind == "msg":
        return _parse_msg(definition, definition.text, f"{pkg}/msg/{leaf}", definition.name)
    parts = _SEPARATOR.split(definition.text)
    if kind == "srv":
        if len(parts) != 2:
            msg = f"{definition.name}.srv has {len(parts) - 1} '---' lines: a .srv has exactly one"
            raise ConfigError(msg)
        found = {}
        for part, suffix in zip(parts, SERVICE_MESSAGE_SUFFIXES, strict=True):
            # Parsed under pkg/msg so that a bare 'Box' means pkg/msg/Box, as rosidl reads it.
            found.update(
                _parse_msg(definition, part, f"{pkg}/msg/{leaf}{suffix}", f"{pkg}/srv/{leaf}{suffix}")
            )
        return found
    if len(parts) != 3:
        msg = f"{definition.name}.action has {len(parts) - 1} '---' lines: an .action has exactly two"
        raise ConfigError(msg)
    found = {}
    for part, suffix in zip(parts, ("_Goal", "_Result", "_Feedback"), strict=True):
        found.update(
            _parse_msg(definition, part, f"{pkg}/msg/{leaf}{suffix}", f"{pkg}/action/{leaf}{suffix}")
        )
    found.update(_action_derived(pkg, leaf))
    return found


def referenced_types(typesdict: Typesdict) -> set[str]:
    """Every message type named by a field of ``typesdict`` and not defined in it."""
    found: set[str] = set()

    def walk(desc: tuple[Any, Any]) -> None:
        kind, detail = desc
        if kind == Nodetype.NAME:
            found.add(detail)
        elif kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
            walk(detail[0])

    for _consts, fields in typesdict.values():
        for _name, desc in fields:
            walk(desc)
    return found - set(typesdict)


def _parse_msg(definition: InterfaceDef, text: str, parse_as: str, name: str) -> Typesdict:
    try:
        parsed = get_types_from_msg(text, parse_as)
    except TypesysError as err:
        raise _parse_error(definition, err) from err
    consts, fields = parsed[parse_as]
    return {name: (list(consts), list(fields) or [_EMPTY_MEMBER])}


def _parse_idl(definition: InterfaceDef) -> Typesdict:
    try:
        parsed = get_types_from_idl(_PREPROCESSOR.sub("", definition.text))
    except TypesysError as err:
        raise _parse_error(definition, err) from err
    if not parsed:
        msg = f"{definition.name}.idl defines no structure: pass the interface's .idl file"
        raise ConfigError(msg)
    return {
        name: (list(consts), list(fields) or [_EMPTY_MEMBER]) for name, (consts, fields) in parsed.items()
    }


def _action_derived(pkg: str, leaf: str) -> Typesdict:
    base = f"{pkg}/action/{leaf}"
    goal_id = ("goal_id", (Nodetype.NAME, _UUID))
    return {
        f"{base}_SendGoal_Request": ([], [goal_id, ("goal", (Nodetype.NAME, f"{base}_Goal"))]),
        f"{base}_SendGoal_Response": (
            [],
            [("accepted", (Nodetype.BASE, ("bool", 0))), ("stamp", (Nodetype.NAME, _TIME))],
        ),
        f"{base}_GetResult_Request": ([], [goal_id]),
        f"{base}_GetResult_Response": (
            [],
            [("status", (Nodetype.BASE, ("int8", 0))), ("result", (Nodetype.NAME, f"{base}_Result"))],
        ),
        f"{base}_FeedbackMessage": ([], [goal_id, ("feedback", (Nodetype.NAME, f"{base}_Feedback"))]),
    }


def _parse_error(definition: InterfaceDef, err: TypesysError) -> ConfigError:
    # rosbags' first line says what failed; the lines after it repeat the whole text.
    first = (str(err).splitlines() or [type(err).__name__])[0].rstrip(":")
    msg = (
        f"definition of {definition.name!r} ({definition.format}) does not parse ({first}): "
        f"pass the interface file's text as it is"
    )
    return ConfigError(msg)
