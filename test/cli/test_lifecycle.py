"""up --detach, list, logs, down; and `down` after the supervisor was killed (crash recovery)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from cli_test_helpers import Run, write_deployment

from fogros_dist.deploy.state import StateStore
from fogros_dist.providers.local.process import process_alive


def _state(cli_env: dict[str, str], name: str) -> object:
    return StateStore(Path(cli_env["FOGROS_DIST_HOME"])).load(name)


def _wait_for(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_detached_up_list_logs_down(fogros: Run, cli_env: dict[str, str], tmp_path: Path) -> None:
    spec = write_deployment(tmp_path / "d.toml", name="life")
    up = fogros("up", str(spec), "--detach")
    assert up.returncode == 0, up.stderr
    assert "deployment life is up" in up.stdout
    try:
        rows = json.loads(fogros("list", "--json").stdout)
        assert [(r["name"], r["status"]) for r in rows] == [("life", "running")]
        assert rows[0]["machines"] == ["gpu:local@127.0.0.1"]
        assert rows[0]["nodes"] == ["edges@gpu"]
        human = fogros("list").stdout
        header = ["NAME", "STATUS", "MACHINES", "LINK", "GPUS", "NODES", "UPTIME", "COST"]
        assert human.splitlines()[0].split() == header
        # The robot bridge's view of the machine's link.
        _wait_for(lambda: json.loads(fogros("list", "--json").stdout)[0]["link"] == {"gpu": "up"})
        state = _state(cli_env, "life")
        records = state.processes  # type: ignore[attr-defined]
        assert {r.role for r in records} == {"node", "bridge"}
        assert all(process_alive(r) for r in records)
        # The node logs that it is ready once its graph is up.
        _wait_for(lambda: "ready on" in fogros("logs", "life").stdout)
        assert "[cloud:gpu] " in fogros("logs", "life", "--machine", "gpu").stdout
    finally:
        down = fogros("down", "life")
    assert down.returncode == 0, down.stderr
    assert json.loads(fogros("list", "--json").stdout) == []
    assert not any(process_alive(r) for r in records)
    # Logs outlive the deployment, for post-mortems.
    assert "[cloud:gpu] " in fogros("logs", "life").stdout


def test_down_after_the_supervisor_was_killed(fogros: Run, cli_env: dict[str, str], tmp_path: Path) -> None:
    spec = write_deployment(tmp_path / "d.toml", name="crash")
    assert fogros("up", str(spec), "--detach").returncode == 0
    state = _state(cli_env, "crash")
    supervisor = state.supervisor  # type: ignore[attr-defined]
    records = state.processes  # type: ignore[attr-defined]
    os.kill(supervisor.pid, signal.SIGKILL)
    _wait_for(lambda: not process_alive(supervisor))
    # Its nodes and bridges run on, orphaned; `list` says so.
    assert all(process_alive(r) for r in records)
    rows = json.loads(fogros("list", "--json").stdout)
    assert rows[0]["status"] == "running (orphaned: its supervisor is gone)"
    down = fogros("down", "crash")
    assert down.returncode == 0, down.stderr
    assert not any(process_alive(r) for r in records)
    assert json.loads(fogros("list", "--json").stdout) == []


def test_down_all_with_nothing_recorded(fogros: Run) -> None:
    result = fogros("down", "--all")
    assert result.returncode == 0
    assert "no deployments recorded" in result.stdout
