"""The rendezvous file the robot writes for each machine's agent (``fogros_dist.train.agent``):
what it carries survives the trip, and a file from before ``--join-wait`` still reads."""

from __future__ import annotations

import json

import pytest

from fogros_dist.errors import ConfigError
from fogros_dist.train.agent import Rendezvous
from fogros_dist.train.options import DEFAULT_JOIN_WAIT_S


def _rendezvous(**overrides: object) -> Rendezvous:
    fields: dict[str, object] = {
        "machine": "gpu1",
        "run_id": "run-1",
        "endpoint": "10.0.0.2:29400",
        "is_host": False,
        "min_nodes": 1,
        "max_nodes": 2,
        "nproc_per_node": 1,
        "max_restarts": 2,
        "workload_argv": ("grasp", "--epochs", "3"),
        "env": (("GLOO_SOCKET_IFNAME", "eth1"),),
        "join_wait_s": 4,
    }
    fields.update(overrides)
    return Rendezvous(**fields)  # type: ignore[arg-type]


def test_every_field_survives_the_file() -> None:
    sent = _rendezvous()
    assert Rendezvous.from_json(sent.to_json()) == sent


def test_a_file_without_join_wait_gets_the_default() -> None:
    data = json.loads(_rendezvous().to_json())
    del data["join_wait_s"]
    assert Rendezvous.from_json(json.dumps(data)).join_wait_s == DEFAULT_JOIN_WAIT_S


def test_a_file_that_is_not_one_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^rendezvous\.json is not a fleet rendezvous \("):
        Rendezvous.from_json('{"machine": "gpu1"}')
