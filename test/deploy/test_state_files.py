"""The state store on disk: private files, bounded reads, every failure one ConfigError or
DeploymentError naming the path (real files; another user where root can act as one)."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from fogros_dist.deploy.state import DeploymentState, StateStore, UnreadableState
from fogros_dist.errors import ConfigError, DeploymentError, UnknownDeployment
from fogros_dist.spec import DeploymentSpec, MachineSpec, NodeSpec


def _state(name: str) -> DeploymentState:
    spec = DeploymentSpec(
        name=name,
        machines=(MachineSpec(name="gpu"),),
        nodes=(NodeSpec(name="n", package="p", executable="e", machine="gpu", env=(("TOKEN", "secret"),)),),
    )
    return DeploymentState(
        spec=spec, status="running", created_at=time.time(), updated_at=0.0, robot_domain_id=7
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_is_0600_in_0700_directories_and_a_loose_home_is_tightened(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    store = StateStore(home)
    store.create(_state("d1"))
    state_file = home / "deployments" / "d1" / "state.json"
    assert "secret" in state_file.read_text()  # why it must be private
    assert _mode(state_file) == 0o600
    assert _mode(home) == _mode(home / "deployments") == _mode(state_file.parent) == 0o700
    with store.locked():
        assert _mode(home / ".lock") == 0o600
    assert not list(state_file.parent.glob("*.tmp*"))


def test_a_state_file_is_read_with_a_bound(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    path = store.deployment_dir("huge") / "state.json"
    path.parent.mkdir(parents=True)
    with path.open("wb") as handle:
        handle.truncate(17 * 1024 * 1024)  # sparse: 17 MiB of NULs
    with pytest.raises(DeploymentError, match=r"huge/state.json is unreadable \(larger than 16 MiB\)"):
        store.load("huge")


def test_scan_names_each_unreadable_file_and_loads_the_rest(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.create(_state("good"))
    (store.deployment_dir("bad") / "state.json").parent.mkdir(parents=True)
    (store.deployment_dir("bad") / "state.json").write_bytes(b"\xc3\x28")
    states, unreadable = store.scan()
    assert [s.spec.name for s in states] == ["good"]
    assert unreadable == [
        UnreadableState(
            name="bad", path=store.deployment_dir("bad") / "state.json", reason="not UTF-8 at byte 0"
        )
    ]
    assert store.names() == ["bad", "good"]
    # Directories without a state file (a detached supervisor's log, leftovers) are not deployments.
    (tmp_path / "deployments" / ".bad-supervisor").mkdir()
    (tmp_path / "deployments" / "logs-only").mkdir()
    assert store.names() == ["bad", "good"]


def test_a_missing_deployment_is_unknown_not_unreadable(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.create(_state("good"))
    with pytest.raises(UnknownDeployment, match=r"no deployment named 'ghost' .*known: good"):
        store.load("ghost")
    store.remove("good")
    assert store.names() == []


def test_a_home_that_cannot_be_made_is_one_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    for home in (blocker, blocker / "sub"):
        store = StateStore(home)
        with pytest.raises(ConfigError, match=rf"state home {home} is not usable.*set FOGROS_DIST_HOME"):
            store.create(_state("d1"))
        with pytest.raises(ConfigError, match=r"is not usable"), store.locked():
            pass
        with pytest.raises(ConfigError, match=r"is not usable"):
            store.names()
    assert blocker.read_text() == ""


def test_an_unwritable_home_is_one_config_error_as_another_user(tmp_path: Path) -> None:
    if os.getuid() == 0:
        # root writes anywhere; the CLI test runs this as user nobody instead.
        pytest.skip("root can write a read-only directory")
    home = tmp_path / "home"
    home.mkdir(mode=0o500)
    with pytest.raises(ConfigError, match=r"Permission denied"):
        StateStore(home).create(_state("d1"))
