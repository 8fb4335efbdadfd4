"""Service types for the service tests: the .srv halves registered as ``pkg/srv/T_Request`` and
``pkg/srv/T_Response`` messages (rosbags' stores carry no services)."""

from __future__ import annotations

from rosbags.typesys import get_types_from_msg, get_typestore

from fogros_dist.ros.types import SUPPORTED_DISTROS, MessageTypes
from fogros_dist.spec import InterfaceDef

ADD_TWO_INTS = "example_interfaces/srv/AddTwoInts"
SET_BOOL = "std_srvs/srv/SetBool"

_DEFINITIONS = {
    ADD_TWO_INTS: ("int64 a\nint64 b\n", "int64 sum\n"),
    SET_BOOL: ("bool data\n", "bool success\nstring message\n"),
}


def register_srv(types: MessageTypes, service_type: str) -> None:
    """Make ``types`` know the request and response messages of ``service_type``."""
    request, response = _DEFINITIONS[service_type]
    try:
        from fogros_dist.ros.interfaces import register_interfaces  # type: ignore[attr-defined]
    except ImportError:
        pass
    else:
        text = f"{request}---\n{response}"
        register_interfaces(types, [InterfaceDef(name=service_type, format="srv", text=text)])
        return
    # Until ros/interfaces.py lands: rosbags files a 'pkg/srv/T_Request' .msg under
    # 'pkg/srv/msg/T_Request', so parse under the msg name and register under the srv one.
    if not types._private:
        types._store = get_typestore(SUPPORTED_DISTROS[types.distro])
        types._private = True
    pkg, _, name = service_type.split("/")
    found = {}
    for half, text in (("Request", request), ("Response", response)):
        parsed = get_types_from_msg(text, f"{pkg}/msg/{name}_{half}")
        found[f"{service_type}_{half}"] = next(iter(parsed.values()))
    types._store.register(found)
