"""The structural CDR check against rosbags, over every message type of a distribution.

For random valid messages of each type (both byte orders), the check must accept; for truncated
and bit-flipped copies it must agree with a full rosbags deserialization, except that it is
stricter about bools (0 or 1 only, as Cyclone DDS enforces).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from rosbags.interfaces import Nodetype

from fogros_dist.errors import ConfigError, UnknownMessageType
from fogros_dist.net.cdr_check import CdrValidator
from fogros_dist.ros.types import MessageTypes

_DTYPES = {
    "bool": np.bool_,
    "byte": np.uint8,
    "char": np.uint8,
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "uint16": np.uint16,
    "int32": np.int32,
    "uint32": np.uint32,
    "int64": np.int64,
    "uint64": np.uint64,
    "float32": np.float32,
    "float64": np.float64,
}
_TEXT = "abc xyz_-/ üñî✓"


class _Builder:
    """Random valid messages of any type, from the typestore's field definitions."""

    def __init__(self, types: MessageTypes, rng: random.Random) -> None:
        self.types = types
        self.rng = rng

    def message(self, type_name: str) -> Any:
        _, fields = self.types.field_definitions(type_name)
        values = {name: self.value(desc) for name, desc in fields}
        return self.types.message_class(type_name)(**values)

    def value(self, desc: tuple[Any, Any]) -> Any:
        kind, detail = desc
        if kind == Nodetype.BASE:
            return self.base(*detail)
        if kind == Nodetype.NAME:
            return self.message(detail)
        sub, length = detail
        if kind == Nodetype.SEQUENCE:
            length = self.rng.randint(0, min(length, 3) if length else 3)
        if sub[0] == Nodetype.BASE and sub[1][0] != "string":
            return np.array([self.base(*sub[1]) for _ in range(length)], dtype=_DTYPES[sub[1][0]])
        return [self.value(sub) for _ in range(length)]

    def base(self, name: str, bound: int) -> Any:
        if name == "string":
            text = "".join(self.rng.choice(_TEXT) for _ in range(self.rng.randint(0, 6)))
            return text[:bound] if bound else text
        if name == "bool":
            return self.rng.random() < 0.5
        if name.startswith("float"):
            return self.rng.uniform(-10, 10)
        return self.rng.randint(0, 100)


def _rosbags_accepts(types: MessageTypes, type_name: str, cdr: bytes) -> bool:
    try:
        types.deserialize(type_name, memoryview(cdr))
    except ConfigError:
        return False
    return True


@pytest.mark.parametrize("distro", ["jazzy", "humble"])
def test_agrees_with_rosbags_on_every_type(distro: str) -> None:
    types = MessageTypes(distro)
    check = CdrValidator(types).check
    rng = random.Random(2011)
    builder = _Builder(types, rng)
    checked = 0
    for type_name in types.names():
        message = builder.message(type_name)
        for little in (True, False):
            cdr = bytes(types.typestore.serialize_cdr(message, type_name, little_endian=little))
            assert check(type_name, cdr) is None, type_name
            variants = [cdr[: rng.randrange(0, len(cdr))] for _ in range(4)]
            for _ in range(12):
                flipped = bytearray(cdr)
                flipped[rng.randrange(4, len(cdr))] ^= 1 << rng.randrange(8)
                variants.append(bytes(flipped))
            for variant in variants:
                ours = check(type_name, variant) is None
                theirs = _rosbags_accepts(types, type_name, variant)
                # Stricter only where a flipped bool became 2..255; never more lenient.
                assert ours == theirs or (theirs and not ours), (
                    type_name,
                    variant.hex(),
                    check(type_name, variant),
                )
                checked += 1
    assert checked > 1000


def test_reasons_name_the_rule_and_the_field() -> None:
    types = MessageTypes("jazzy")
    check = CdrValidator(types).check
    string = types.serialize("std_msgs/msg/String", types.message_class("std_msgs/msg/String")(data="hi"))
    assert check("std_msgs/msg/String", string) is None
    assert "is not plain CDR" in str(check("std_msgs/msg/String", b"\x00\x07" + string[2:]))
    assert "std_msgs/msg/String.data has a bad length" in str(check("std_msgs/msg/String", string[:-1]))
    assert "bytes follow the end" in str(check("std_msgs/msg/String", string + bytes(8)))
    bad_utf8 = string[:4] + (2).to_bytes(4, "little") + b"\xff\x00"
    assert "not UTF-8" in str(check("std_msgs/msg/String", bad_utf8))
    true = types.serialize("std_msgs/msg/Bool", types.message_class("std_msgs/msg/Bool")(data=True))
    assert "bool other than 0 or 1" in str(check("std_msgs/msg/Bool", true[:4] + b"\x02"))
    with pytest.raises(UnknownMessageType, match="did you mean"):
        check("std_msgs/msg/Strin", string)
