"""The state store survives crashes (atomic files, lock) and the registry fails by name."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fogros_dist.deploy.state import DeploymentState, StateStore, validate_deployment_name
from fogros_dist.errors import ConfigError, DeploymentError, UnknownDeployment, UnknownProvider
from fogros_dist.registry import get_provider, provider_names
from fogros_dist.spec import DeploymentSpec, Host, MachineSpec, NodeSpec


def _state(name: str = "d1", domain: str = "150") -> DeploymentState:
    spec = DeploymentSpec(
        name=name,
        machines=(MachineSpec(name="gpu"),),
        nodes=(NodeSpec(name="n", package="p", executable="e", machine="gpu"),),
    )
    host = Host(
        machine="gpu",
        provider="local",
        address="127.0.0.1",
        workdir="/tmp/x",
        resource_id="r",
        bridge_port=1,
        env=(("ROS_DOMAIN_ID", domain),),
    )
    return DeploymentState(
        spec=spec, status="running", created_at=time.time(), updated_at=0.0, robot_domain_id=7, hosts=(host,)
    )


def test_create_load_remove(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.create(_state())
    loaded = store.load("d1")
    assert loaded.spec.name == "d1"
    assert loaded.updated_at > 0
    assert store.names() == ["d1"]
    assert store.used_domain_ids() == {7, 150}
    store.remove("d1")
    assert store.names() == []


def test_create_refuses_a_recorded_name(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.create(_state())
    with pytest.raises(DeploymentError, match=r"already recorded: run 'fogros-dist down d1' first"):
        store.create(_state())


def test_unknown_deployment_lists_known(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.create(_state("alpha"))
    with pytest.raises(UnknownDeployment, match=r"no deployment named 'beta'.*known: alpha"):
        store.load("beta")


def test_corrupt_state_file_is_named_and_skipped_by_list(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.create(_state("good"))
    bad = store.deployment_dir("bad") / "state.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{ not json")
    with pytest.raises(DeploymentError, match=r"state file .*bad/state.json is unreadable"):
        store.load("bad")
    assert [s.spec.name for s in store.load_all()] == ["good"]


@pytest.mark.parametrize("name", ["", "Upper", "1abc", "a_b", "a" * 64, "a/b"])
def test_bad_deployment_names(name: str) -> None:
    with pytest.raises(ConfigError, match=r"deployment name .* is invalid"):
        validate_deployment_name(name)


def test_registry_knows_local_and_names_unknown() -> None:
    assert "local" in provider_names()
    assert get_provider("local").name == "local"
    with pytest.raises(UnknownProvider, match=r"unknown provider 'gcp': use one of .*local"):
        get_provider("gcp")
