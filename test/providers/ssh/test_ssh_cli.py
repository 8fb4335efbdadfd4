"""`fogros-dist` with an SSH machine, as a user runs it: one-line errors, and `down` after the
supervisor crashed (it reattaches to the processes on the host from the state record alone)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cancel_helpers import CANCEL_BOUND_S, black_hole
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
    # Released, the failed deployment is kept with its reason until `down` forgets it.
    rows = json.loads(_fogros(cli_env, "list", "--json").stdout)
    assert [(r["name"], r["machines"]) for r in rows] == [("ssh-unknown", [])]
    assert rows[0]["status"].startswith("failed: ssh-ready: machine 'gpu': host root@")
    assert _fogros(cli_env, "down", "ssh-unknown").returncode == 0
    assert json.loads(_fogros(cli_env, "list", "--json").stdout) == []


@pytest.mark.parametrize("how", ["ctrl-c", "down"])
def test_ctrl_c_or_down_during_the_ssh_wait_stops_the_up_within_2_s_and_leaves_nothing(
    ssh_lab: SSHLab,
    scratch_host: Callable[[], LabHost],
    cli_env: dict[str, str],
    tmp_path: Path,
    how: str,
) -> None:
    host = scratch_host()
    known = tmp_path / "known_hosts"
    known.write_text(host.known_hosts_line())
    # An address that never answers: the SSH wait would go on for its retries (about 40 s).
    black_hole(host)
    spec = _deployment_file(tmp_path / "d.toml", "ssh-stopped", ssh_options(ssh_lab, host, known))
    up = subprocess.Popen(
        [sys.executable, "-m", "fogros_dist.cli.main", "up", str(spec)],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        # Well into the SSH wait: the record exists, the machine is pending.
        store = StateStore(Path(cli_env["FOGROS_DIST_HOME"]))
        deadline = time.monotonic() + 30
        while "ssh-stopped" not in store.names() or store.load("ssh-stopped").pending != ("gpu",):
            assert up.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.5)
        asked = time.monotonic()
        if how == "ctrl-c":
            up.send_signal(signal.SIGINT)
        else:
            down = _fogros(cli_env, "down", "ssh-stopped")
            assert down.returncode == 0, down.stdout + down.stderr
            assert "deployment ssh-stopped is down" in down.stdout
        up.wait(timeout=30)
        stopped_after = time.monotonic() - asked
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
    _, stderr = up.communicate()
    assert stopped_after < CANCEL_BOUND_S, (stopped_after, stderr)
    assert up.returncode == 130, stderr
    assert "Traceback" not in stderr
    # One line says so (the stage lines above it are progress).
    said = [line for line in stderr.splitlines() if line.startswith("fogros-dist: ")]
    assert len(said) == 1, stderr
    assert said[0].startswith(
        f"fogros-dist: stopped: machine 'gpu': stopped on request while connecting to root@{host.address}"
    ), said
    # Stopped on request, torn down: no record, nothing of it anywhere.
    assert json.loads(_fogros(cli_env, "list", "--json").stdout) == []


def test_down_with_the_machine_cut_off_names_what_is_left_and_a_second_down_finishes(
    ssh_lab: SSHLab, scratch_host: Callable[[], LabHost], cli_env: dict[str, str], tmp_path: Path
) -> None:
    """The machine's link is cut under a running deployment: `down` must neither hang nor say
    "down" while the node may still run there. It names what is left on the machine, keeps the
    record, exits 1; once the link is back the same command finishes the job."""
    host = scratch_host()
    known = tmp_path / "known_hosts"
    known.write_text(host.known_hosts_line())
    spec = _deployment_file(tmp_path / "d.toml", "ssh-cut", ssh_options(ssh_lab, host, known))
    up = _fogros(cli_env, "up", str(spec), "--detach")
    assert up.returncode == 0, up.stderr + up.stdout
    store = StateStore(Path(cli_env["FOGROS_DIST_HOME"]))
    remote = [r for r in store.load("ssh-cut").processes if r.machine == "gpu"]
    assert {r.name for r in remote} == {"bridge", "edges"}
    link = ["ip", "-n", host.netns, "link", "set", host.veth_host]
    subprocess.run([*link, "down"], check=True)
    try:
        asked = time.monotonic()
        down = _fogros(cli_env, "down", "ssh-cut")
        took = time.monotonic() - asked
    finally:
        subprocess.run([*link, "up"], check=True)
    assert down.returncode == 1, down.stdout + down.stderr
    # The supervisor's own try (its lost connection, then one connect budget: about 30 s) and
    # down's (one budget, about 12 s); a teardown hung on the lost connection is killed only
    # after SUPERVISOR_TEARDOWN_S (120 s).
    assert took < 75, (took, down.stdout)
    assert "Traceback" not in down.stderr
    assert "deployment ssh-cut is NOT down" in down.stdout
    left = [line for line in down.stdout.splitlines() if line.startswith("fogros-dist: error: ssh-cut: left")]
    assert any("edges" in line and "'gpu'" in line for line in left), left
    # They do run on, out of reach, and the record still holds them for the next `down`.
    assert all(process_alive(r) for r in remote)
    kept = store.load("ssh-cut")
    assert kept.status == "failed"
    assert {r.name for r in kept.processes} == {"bridge", "edges"}
    again = _fogros(cli_env, "down", "ssh-cut")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "deployment ssh-cut is down" in again.stdout
    assert not any(process_alive(r) for r in remote)
    assert store.names() == []
