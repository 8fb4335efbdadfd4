"""A lab's own package offloaded to an SSH host: found in the robot's colcon overlay, only it and
its in-workspace dependency pushed, built there with colcon, started from the host's overlay,
answering through the bridge; an unchanged workspace builds nothing the next time; a package
that cannot build fails the `up` in one line and leaves nothing running.

The host has no ROS 2 here (``ros_setup=none``): the node speaks through fogros_dist's DDS adapter
and colcon comes with the machine's runtime. The ROS lane builds an ament_cmake package with the
host's ROS 2 (test/launch).
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest
from e2e_helpers import assert_failed_and_released
from ssh_fixtures import ssh_options
from sshlab import LabHost, SSHLab
from workspace_helpers import PREFIX, colcon_build, greet_round_trip, greeter_deployment, user_workspace

from fogros_dist.deploy.engine import Deployment, Stage
from fogros_dist.deploy.state import StateStore
from fogros_dist.errors import ProvisionError
from fogros_dist.providers.local.process import start_ticks
from fogros_dist.remote import selfwheel
from fogros_dist.spec import DeploymentSpec, MachineSpec

pytestmark = pytest.mark.netns


@pytest.fixture
def frozen_self_wheel(monkeypatch: pytest.MonkeyPatch, wheel_cache: Path) -> None:
    """The robot's fogros_dist as it was when the test began, and the session's wheel cache."""
    monkeypatch.setenv("FOGROS_DIST_CACHE", str(wheel_cache))
    snapshot = selfwheel.package_files()
    monkeypatch.setattr(selfwheel, "package_files", lambda: snapshot)


def _machine(lab: SSHLab, host: LabHost, known_hosts: Path) -> MachineSpec:
    options = ssh_options(lab, host, known_hosts, ros_setup="none")
    return MachineSpec(name="gpu", provider="ssh", options=tuple(sorted(options.items())))


def _up(spec: DeploymentSpec, store: StateStore, robot_domain: int) -> tuple[Deployment, list[Stage]]:
    stages: list[Stage] = []
    deployment = Deployment(spec, store=store, reporter=stages.append, robot_domain_id=robot_domain)
    deployment.up()
    return deployment, stages


def _messages(stages: list[Stage], stage: str) -> list[str]:
    return [s.message for s in stages if s.stage == stage and s.machine == "gpu"]


def test_the_users_package_is_built_on_the_host_and_an_unchanged_one_is_not_built_again(
    *,
    ssh_lab: SSHLab,
    alpha: LabHost,
    known_hosts: Path,
    tmp_path: Path,
    robot_domain: int,
    monkeypatch: pytest.MonkeyPatch,
    frozen_self_wheel: None,
) -> None:
    root = user_workspace(tmp_path / "ws")
    # The user built and sourced the workspace on the robot: that is how it is found.
    monkeypatch.setenv("COLCON_PREFIX_PATH", str(colcon_build(root)))
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    store = StateStore(tmp_path / "home")
    spec = greeter_deployment("ws-e2e", _machine(ssh_lab, alpha, known_hosts))

    deployment, stages = _up(spec, store, robot_domain)
    try:
        assert greet_round_trip(robot_domain) == f"{PREFIX}, robot"
        names = [s.stage for s in stages if s.machine == "gpu"]
        assert names.index("synced") < names.index("building") < names.index("built") < names.index("started")
        assert _messages(stages, "building") == ["greet_words (1/2)", "greeter (2/2)"]
        assert _messages(stages, "synced")[0].startswith("workspace (greet_words, greeter): ")
        assert re.match(
            r"2 package\(s\) \(greet_words, greeter\) in \d+\.\d s$", _messages(stages, "built")[0]
        )
        host = store.load("ws-e2e").hosts[0]
        overlay = dict(host.env)["FOGROS_SSH_OVERLAY"]
        sources = Path(overlay) / "sources"
        # Only what the node needs travelled: no 'unrelated' package, no robot build output.
        assert sorted(p.parent.relative_to(sources).as_posix() for p in sources.rglob("package.xml")) == [
            "src/greeter",
            "src/words/greet_words",
        ]
        assert not (sources / "src" / "unrelated").exists()
        assert not (sources / "install").exists()
        # The node runs from the host's build of the package, not from the robot's.
        node = next(r for r in store.load("ws-e2e").processes if r.name == "greeter")
        assert Path(f"/proc/{node.pid}/cmdline").read_bytes().split(b"\0")[1].decode().startswith(overlay)
    finally:
        deployment.down()

    deployment, stages = _up(spec, store, robot_domain)
    try:
        synced = _messages(stages, "synced")[0]
        assert re.match(r"workspace \(greet_words, greeter\): 0 of \d+ files sent: unchanged", synced), synced
        assert _messages(stages, "build cached"), stages
        assert not _messages(stages, "building")
        assert greet_round_trip(robot_domain, "again") == f"{PREFIX}, again"
    finally:
        deployment.down()

    # A change to a dependency travels and is built; the node then says what the new code says.
    words = root / "src" / "words" / "greet_words" / "greet_words" / "__init__.py"
    words.write_text("PREFIX = 'changed on the robot'\n")
    deployment, stages = _up(spec, store, robot_domain)
    try:
        assert _messages(stages, "built"), stages
        assert greet_round_trip(robot_domain) == "changed on the robot, robot"
    finally:
        deployment.down()
    assert store.names() == []


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (
            "syntax",
            r"^machine 'gpu': package 'greeter' has a syntax error on 10\.231\.\d+\.2: "
            r"src/greeter/greeter/node\.py:3: invalid syntax in 'def broken\(:': "
            r"full log .*/logs/fogros-build\.out there$",
        ),
        (
            "setup",
            r"^machine 'gpu': colcon build of package 'greeter' failed on 10\.231\.\d+\.2: "
            r".*RuntimeError: this setup\.py refuses to build.*: full log .*/log/latest_build/greeter/"
            r"stdout_stderr\.log there$",
        ),
    ],
)
def test_a_package_that_does_not_build_fails_the_up_in_one_line_and_leaves_nothing_running(
    *,
    ssh_lab: SSHLab,
    alpha: LabHost,
    known_hosts: Path,
    tmp_path: Path,
    robot_domain: int,
    frozen_self_wheel: None,
    breakage: str,
    message: str,
) -> None:
    root = user_workspace(tmp_path / "ws")
    greeter = root / "src" / "greeter"
    if breakage == "syntax":
        node = greeter / "greeter" / "node.py"
        lines = node.read_text().splitlines()
        lines[2] = "def broken(:"
        node.write_text("\n".join(lines) + "\n")
    else:
        setup = greeter / "setup.py"
        setup.write_text("raise RuntimeError('this setup.py refuses to build')\n" + setup.read_text())
    store = StateStore(tmp_path / "home")
    spec = greeter_deployment(f"ws-{breakage}", _machine(ssh_lab, alpha, known_hosts), workspace=str(root))
    stages: list[Stage] = []
    deployment = Deployment(spec, store=store, reporter=stages.append, robot_domain_id=robot_domain)
    with pytest.raises(ProvisionError) as caught:
        deployment.up()
    assert re.match(message, str(caught.value)), str(caught.value)
    assert "\n" not in str(caught.value)
    assert_failed_and_released(store, f"ws-{breakage}", "machine 'gpu'")
    # Nothing of the deployment runs on the host any more (bridge, build).
    run = Path(alpha.remote_dir) / "deployments" / f"ws-{breakage}" / "gpu" / "run"
    records = [json.loads(p.read_text()) for p in run.glob("*.json")]
    assert {r["name"] for r in records} >= {"bridge", "fogros-build"}
    assert not [r["name"] for r in records if start_ticks(int(r["pid"])) == int(r["start_ticks"])]


def test_a_build_killed_on_the_host_fails_the_up_and_the_next_up_builds_again(
    *,
    ssh_lab: SSHLab,
    alpha: LabHost,
    known_hosts: Path,
    tmp_path: Path,
    robot_domain: int,
    frozen_self_wheel: None,
) -> None:
    root = user_workspace(tmp_path / "ws")
    store = StateStore(tmp_path / "home")
    spec = greeter_deployment("ws-killed", _machine(ssh_lab, alpha, known_hosts), workspace=str(root))
    record = Path(alpha.remote_dir) / "deployments" / "ws-killed" / "gpu" / "run" / "fogros-build.json"
    killed: list[int] = []

    def kill_the_build(stage: Stage) -> None:
        # The moment colcon starts the first package, the whole build dies (kill -9 of its group).
        if stage.stage == "building" and not killed:
            pgid = int(json.loads(record.read_text())["pgid"])
            os.killpg(pgid, signal.SIGKILL)
            killed.append(pgid)

    deployment = Deployment(spec, store=store, reporter=kill_the_build, robot_domain_id=robot_domain)
    with pytest.raises(ProvisionError) as caught:
        deployment.up()
    assert killed
    assert re.match(
        r"^machine 'gpu': building the workspace failed on 10\.231\.\d+\.2: "
        r"the build process exited with code -9: full log .*/logs/fogros-build\.out there$",
        str(caught.value),
    ), str(caught.value)
    assert_failed_and_released(store, "ws-killed", "exited with code -9")
    # Nothing was stamped as built: the next up builds, and the node answers.
    deployment, stages = _up(spec, store, robot_domain)
    try:
        assert _messages(stages, "built"), stages
        assert greet_round_trip(robot_domain) == f"{PREFIX}, robot"
    finally:
        deployment.down()
