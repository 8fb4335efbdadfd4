"""Field paths checked against a message type's definition, before any bag is read.

A mapping names numbers inside messages with dotted paths (``twist.linear.x``, ``position[1]``).
:func:`check_field_path` walks the path through the type's ``rosbags`` field definitions, so a
typo is one line naming the topic, the type, the path and the numeric fields there are, instead
of one error per message (or a silently wrong column). Sequence lengths are only known per
message; :meth:`~fogros_dist.workloads.policy.dataset.TopicFields.extract` checks those.
"""

from __future__ import annotations

import re
from typing import Any

from rosbags.interfaces import Nodetype

from fogros_dist.errors import ConfigError
from fogros_dist.ros.types import MessageTypes

__all__ = ["check_field_path", "numeric_fields", "parse_field_path"]

# One path step: an attribute name, optionally indexed (``position[1]``).
_STEP = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?$")
# Everything float() takes from a rosbags message; strings are not numbers.
_NUMERIC = frozenset(
    {
        "bool",
        "byte",
        "char",
        "octet",
        "int8",
        "uint8",
        "int16",
        "uint16",
        "int32",
        "uint32",
        "int64",
        "uint64",
        "float32",
        "float64",
    }
)
# A large type (PointCloud2, a covariance) would make the hint longer than the error.
_MAX_LISTED = 24


def parse_field_path(path: str) -> tuple[tuple[str, int | None], ...]:
    """``"pose.position[1]"`` -> ``(("pose", None), ("position", 1))``.

    Raises:
        ConfigError: a step is not a name with an optional ``[index]``.
    """
    steps: list[tuple[str, int | None]] = []
    for part in path.split("."):
        match = _STEP.match(part)
        if match is None:
            msg = f"field path {path!r} is malformed at {part!r}: use names and indices, e.g. 'position[1]'"
            raise ConfigError(msg)
        steps.append((match.group(1), None if match.group(2) is None else int(match.group(2))))
    return tuple(steps)


def _fields(types: MessageTypes, type_name: str) -> list[tuple[str, tuple[Any, Any]]]:
    _consts, fields = types.field_definitions(type_name)
    return list(fields)


def _leaves(types: MessageTypes, kind: Any, detail: Any, prefix: str, out: list[str]) -> None:
    """Append the numeric paths under one field (``prefix`` is its path so far)."""
    if kind == Nodetype.BASE:
        if detail[0] in _NUMERIC:
            out.append(prefix)
    elif kind == Nodetype.NAME:
        for name, (sub_kind, sub_detail) in _fields(types, detail):
            _leaves(types, sub_kind, sub_detail, f"{prefix}.{name}" if prefix else name, out)
    else:  # ARRAY (fixed length) or SEQUENCE (any length): one index, then the element
        (element_kind, element_detail), length = detail
        index = f"[0..{length - 1}]" if kind == Nodetype.ARRAY and length else "[i]"
        _leaves(types, element_kind, element_detail, f"{prefix}{index}", out)


def numeric_fields(types: MessageTypes, type_name: str) -> tuple[str, ...]:
    """Every numeric path of ``type_name``, arrays written ``name[i]`` (``name[0..35]`` when fixed).

    Raises:
        UnknownMessageType: the type is not known.
    """
    out: list[str] = []
    _leaves(types, Nodetype.NAME, type_name, "", out)
    return tuple(out)


def _available(types: MessageTypes, type_name: str) -> str:
    paths = numeric_fields(types, type_name)
    shown = ", ".join(paths[:_MAX_LISTED])
    return shown + (f" and {len(paths) - _MAX_LISTED} more" if len(paths) > _MAX_LISTED else "")


def check_field_path(types: MessageTypes, *, topic: str, type_name: str, path: str) -> None:
    """Check that ``path`` names one number of a ``type_name`` message.

    Args:
        types: the message definitions.
        topic: the topic it is read from (for the message).
        type_name: the topic's message type.
        path: ``twist.linear.x``, ``position[1]``.

    Raises:
        ConfigError: one line naming topic, type and path, what is wrong, and the numeric
            fields of the type.
        UnknownMessageType: ``type_name`` is not known.
    """
    steps = parse_field_path(path)
    where = f"field {path!r} of {topic} ({type_name})"
    hint = f"its numeric fields are {_available(types, type_name)}"
    kind: Any = Nodetype.NAME
    detail: Any = type_name
    for depth, (name, index) in enumerate(steps):
        if kind != Nodetype.NAME:
            done = path.split(".")[depth - 1]
            msg = f"{where}: {done} is a number, it has no field {name!r}; {hint}"
            raise ConfigError(msg)
        found = dict(_fields(types, detail)).get(name)
        if found is None:
            msg = f"{where} does not exist: {detail} has no field {name!r}; {hint}"
            raise ConfigError(msg)
        kind, detail = found
        if kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
            (element_kind, element_detail), length = detail
            if index is None:
                msg = f"{where}: {name} is an array, pick one element, e.g. {name}[0]; {hint}"
                raise ConfigError(msg)
            if kind == Nodetype.ARRAY and index >= length:
                msg = f"{where}: {name} has {length} elements, index {index} is past its end; {hint}"
                raise ConfigError(msg)
            kind, detail = element_kind, element_detail
        elif index is not None:
            msg = f"{where}: {name} is not an array, drop [{index}]; {hint}"
            raise ConfigError(msg)
    if kind == Nodetype.NAME:
        msg = f"{where} is a {detail}, not a number: name a field inside it; {hint}"
        raise ConfigError(msg)
    if detail[0] not in _NUMERIC:
        msg = f"{where} is a {detail[0]}, not a number; {hint}"
        raise ConfigError(msg)
