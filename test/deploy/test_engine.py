"""The deployment engine on the Local provider: real processes, real bridges, real DDS."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from e2e_helpers import assert_failed_and_released

from fogros_dist.deploy.engine import Deployment, Stage
from fogros_dist.deploy.state import StateStore
from fogros_dist.errors import ConfigError
from fogros_dist.spec import DeploymentSpec, MachineSpec, NodeSpec, TopicSpec


def _crashing_package(root: Path) -> Path:
    """An ament-style prefix with one executable that writes to stderr and exits 3."""
    exe = root / "lib" / "crashy" / "crash"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\necho starting\necho 'fatal: no camera calibration' >&2\nexit 3\n")
    exe.chmod(0o755)
    return root


def _spec(name: str, executable: str = "crash", package: str = "crashy") -> DeploymentSpec:
    return DeploymentSpec(
        name=name,
        machines=(MachineSpec(name="gpu"),),
        nodes=(
            NodeSpec(
                name="n1",
                package=package,
                executable=executable,
                machine="gpu",
                topics_in=(TopicSpec(name="/in", type="std_msgs/msg/String"),),
            ),
        ),
    )


def test_node_exit_code_and_stderr_tail_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, robot_domain: int
) -> None:
    prefix = _crashing_package(tmp_path / "prefix")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    stages: list[Stage] = []
    lines: list[str] = []
    deployment = Deployment(
        _spec("crash"),
        store=StateStore(tmp_path / "home"),
        reporter=stages.append,
        output=lambda machine, name, stream, text: lines.append(f"[{machine}/{name}/{stream}] {text}"),
        robot_domain_id=robot_domain,
    )
    deployment.up()
    try:
        code = deployment.wait(threading.Event())
    finally:
        report = deployment.down()
    assert code == 1
    exited = [s.message for s in stages if s.stage == "exited"]
    assert exited == ["node 'n1' on machine 'gpu' exited with code 3"]
    assert [s.message for s in stages if s.stage == "stderr"] == ["fatal: no camera calibration"]
    assert "[gpu/n1/stdout] starting" in lines
    # The node's exit was recorded when it happened; the teardown stopped the rest.
    assert {e.name for e in report.exits} == {"bridge", "robot-bridge"}
    assert report.terminated_hosts == ("gpu",)
    assert report.failure == "node 'n1' on machine 'gpu' exited with code 3: fatal: no camera calibration"
    store = StateStore(tmp_path / "home")
    assert_failed_and_released(store, "crash", "exited with code 3: fatal: no camera calibration")
    assert [(e.name, e.exit_code) for e in store.load("crash").exits] == [
        ("n1", 3),
        # Bridges end cleanly on SIGTERM.
        ("bridge", 0),
        ("robot-bridge", 0),
    ]


def test_state_is_recorded_before_each_step(tmp_path: Path, robot_domain: int) -> None:
    store = StateStore(tmp_path / "home")
    seen: list[tuple[str, int, int]] = []

    def watch(stage: Stage) -> None:
        if store.names():
            state = store.load("steps")
            seen.append((state.status, len(state.hosts), len(state.processes)))

    deployment = Deployment(
        _spec("steps", executable="edge_detector", package="fogros_dist"),
        store=store,
        reporter=watch,
        robot_domain_id=robot_domain,
    )
    deployment.up()
    try:
        state = store.load("steps")
        assert state.status == "running"
        assert [p.role for p in state.processes] == ["bridge", "bridge", "node"]
        assert state.supervisor is not None
        assert state.supervisor.pid == os.getpid()
    finally:
        deployment.down()
    assert ("provisioning", 1, 0) in seen
    assert ("running", 1, 3) in seen


def test_plan_failure_records_nothing(tmp_path: Path, robot_domain: int) -> None:
    spec = DeploymentSpec(
        name="bad",
        machines=(MachineSpec(name="gpu", options=(("gpus", 4),)),),
        nodes=(NodeSpec(name="n", package="p", executable="e", machine="gpu"),),
    )
    store = StateStore(tmp_path / "home")
    with pytest.raises(ConfigError, match=r"option 'gpus' is not supported by provider 'local'"):
        Deployment(spec, store=store, robot_domain_id=robot_domain).up()
    assert store.names() == []
