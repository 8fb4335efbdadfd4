"""The Zenoh configuration of a bridge session: explicit endpoints, no scouting, no shared memory."""

from __future__ import annotations

import json

import pytest
import zenoh

from fogros_dist.errors import ConfigError
from fogros_dist.net.zenoh_config import build_config, config_for, config_values
from fogros_dist.spec import BridgeRunSpec, BridgeSpec


def _get(config: zenoh.Config, key: str) -> object:
    return json.loads(config.get_json(key))


def test_defaults_are_peer_explicit_endpoints_no_scouting_no_shm() -> None:
    spec = BridgeRunSpec(deployment="d", side="robot", machine="robot", connect=("tcp/127.0.0.1:7447",))
    config = config_for(spec)
    assert _get(config, "mode") == "peer"
    assert _get(config, "connect/endpoints") == ["tcp/127.0.0.1:7447"]
    # Zenoh's own default would listen on every interface: a connecting side listens nowhere.
    assert _get(config, "listen/endpoints") == []
    assert _get(config, "scouting/multicast/enabled") is False
    assert _get(config, "transport/shared_memory/enabled") is False
    # Zenoh panics on queues over 16 batches when a link opens: stay within.
    assert 2 < _get(config, "transport/link/tx/queue/size/data") <= 16  # type: ignore[operator]


def test_scouting_and_shared_memory_only_when_asked() -> None:
    values = config_values(listen=("tcp/0.0.0.0:7447",), bridge=BridgeSpec(scouting=True, shared_memory=True))
    assert values["scouting/multicast/enabled"] is True
    assert values["transport/shared_memory/enabled"] is True
    config = build_config(listen=("tcp/127.0.0.1:0",))
    assert _get(config, "listen/endpoints") == ["tcp/127.0.0.1:0"]
    assert _get(config, "connect/endpoints") == []


@pytest.mark.parametrize(
    ("listen", "connect", "protocol", "message"),
    [
        ((), (), "tcp", "needs a listen or a connect endpoint"),
        (("127.0.0.1:7447",), (), "tcp", r"'127.0.0.1:7447' is malformed: use '<protocol>/<host>:<port>'"),
        (
            (),
            ("quic/10.0.0.1:7447",),
            "tcp",
            r"uses 'quic' but the bridge protocol is 'tcp'.*'tcp/10.0.0.1:7447'",
        ),
        (("tcp/127.0.0.1:70000",), (), "tcp", "has port 70000: use 1..65535"),
    ],
)
def test_bad_endpoints_are_one_line_errors(
    listen: tuple[str, ...], connect: tuple[str, ...], protocol: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        config_values(listen=listen, connect=connect, bridge=BridgeSpec(protocol=protocol))  # type: ignore[arg-type]


def test_ipv6_and_names_are_accepted() -> None:
    values = config_values(connect=("tcp/[::1]:7447", "tcp/gpu-box.local:7447#iface=lo"))
    assert values["connect/endpoints"] == ["tcp/[::1]:7447", "tcp/gpu-box.local:7447#iface=lo"]
