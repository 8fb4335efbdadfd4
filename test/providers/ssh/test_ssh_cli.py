"""`fogros-dist` with an SSH machine, as a user runs it: one-line errors, and `down` after the
supervisor crashed (it reattaches to the processes on the host from the state record alone)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ssh_fixtures import ssh_options
from sshlab import LabHost, SSHLab

from fogros_dist.deploy.state import StateStore
from fogros_dist.providers.local.process import process_alive
from fogros_dist.spec import OptionValue

pytestmark = pytest.mark.netns


def _toml_value(value: OptionValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value)


def _deployment_file(path: Path, name: str, options: dict[str, OptionValue]) -> Path:
    lines = [f'name = "{name}"', "[[machines]]", 'name = "gpu"', 'provider = "ssh"', "[machines.options]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in sorted(options.items())]
    lines += [
        "[[nodes]]",
        'name = "edges"',
        'package = "fogros_dist"',
        'executable = "edge_detector"',
        'machine = "gpu"',
        'topics_in = ["/camera/image:sensor_msgs/msg/Image"]',
        'topics_out = ["/camera/edges:sensor_msgs/msg/Image"]',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def cli_env(tmp_path: Path, robot_domain: int, wheel_cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        FOGROS_DIST_HOME=str(tmp_path / "home"),
        FOGROS_DIST_CACHE=str(wheel_cache),
        HOME=str(tmp_path),
        ROS_DOMAIN_ID=str(robot_domain),
        PYTHONUNBUFFERED="1",
    )
    return env


def _fogros(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fogros_dist.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_down_reattaches_to_the_host_after_the_supervisor_was_killed(
    ssh_lab: SSHLab, alpha: LabHost, known_hosts: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    spec = _deployment_file(tmp_path / "d.toml", "ssh-crash", ssh_options(ssh_lab, alpha, known_hosts))
    up = _fogros(cli_env, "up", str(spec), "--detach")
    assert up.returncode == 0, up.stderr + up.stdout
    store = StateStore(Path(cli_env["FOGROS_DIST_HOME"]))
    state = store.load("ssh-crash")
    remote = [r for r in state.processes if r.machine == "gpu"]
    assert {r.name for r in remote} == {"bridge", "edges"}
    assert state.supervisor is not None
    os.kill(state.supervisor.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process_alive(state.supervisor):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # Orphaned, the node and the bridge run on, on the host.
    assert all(process_alive(r) for r in remote)
    down = _fogros(cli_env, "down", "ssh-crash")
    assert down.returncode == 0, down.stderr + down.stdout
    assert "deployment ssh-crash is down" in down.stdout
    assert not any(process_alive(r) for r in remote)
    assert store.names() == []


def test_an_unknown_host_is_one_line_naming_the_stage_and_the_fix(
    ssh_lab: SSHLab, beta: LabHost, cli_env: dict[str, str], tmp_path: Path
) -> None:
    empty = tmp_path / "empty_known_hosts"
    spec = _deployment_file(tmp_path / "d.toml", "ssh-unknown", ssh_options(ssh_lab, beta, empty))
    result = _fogros(cli_env, "up", str(spec))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("fogros-dist: error:")]
    assert errors == [
        f"fogros-dist: error: ssh-ready: machine 'gpu': host root@{beta.address}:2222 is not in {empty} "
        f"(it presents ssh-ed25519 {beta.fingerprint()}): if that fingerprint is right, run "
        f"'fogros-dist trust {beta.address} --port 2222 --known-hosts {empty}', or set trust_new_host=true"
    ]
    assert json.loads(_fogros(cli_env, "list", "--json").stdout) == []
