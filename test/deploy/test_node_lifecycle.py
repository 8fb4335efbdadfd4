"""A node's life on a Local machine: its command line, shipped files, prefix, output, respawn, stop.

Real processes started through the engine and the node launcher, as a launch file's CloudNode
would have them; each node is a small program in an ament-style prefix of the test's own making.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fogros_dist.deploy.engine import Deployment, Stage
from fogros_dist.deploy.state import StateStore
from fogros_dist.spec import DeploymentSpec, MachineSpec, NodeSpec, ShippedFile

# Prints its arguments and the files it was given as one JSON line, then waits to be stopped.
_REPORT_ARGS = """
import json, os, sys, time
files = os.environ.get("FOGROS_DIST_NODE_FILES")
print(json.dumps({
    "argv": sys.argv[1:],
    "files_dir": files,
    "files": sorted(os.listdir(files)) if files else [],
    "from_prefix": os.environ.get("FROM_PREFIX"),
    "mine": os.environ.get("MINE"),
}), flush=True)
print("to stderr", file=sys.stderr, flush=True)
while True:
    time.sleep(0.1)
"""
# Says it ran and exits at once.
_RUN_ONCE = 'print("ran", flush=True)\n'
# Opens the DDS adapter's graph like fogros_dist's own nodes, and records the signal that stops it.
_DDS_NODE = """
import os, signal, sys, threading
from fogros_dist.ros.dds import DdsGraph
graph = DdsGraph(int(os.environ["ROS_DOMAIN_ID"]), distro="jazzy")
done = threading.Event()
def stop(sig, frame):
    print(signal.Signals(sig).name, flush=True)
    done.set()
signal.signal(signal.SIGINT, stop)
signal.signal(signal.SIGTERM, stop)
print("up", flush=True)
done.wait()
graph.close()
"""


def _package(root: Path, programs: dict[str, str]) -> Path:
    """An ament-style prefix with package ``tests`` whose executables run ``programs``."""
    for name, code in programs.items():
        exe = root / "lib" / "tests" / name
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.write_text(f"#!{sys.executable}\n{code}")
        exe.chmod(0o755)
    return root


@pytest.fixture
def ament(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    prefix = _package(
        tmp_path / "prefix", {"report_args": _REPORT_ARGS, "run_once": _RUN_ONCE, "dds_node": _DDS_NODE}
    )
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    return prefix


def _deployment(
    tmp_path: Path, robot_domain: int, name: str, *nodes: NodeSpec
) -> tuple[Deployment, list[Stage], list[tuple[str, str, str]]]:
    stages: list[Stage] = []
    lines: list[tuple[str, str, str]] = []
    deployment = Deployment(
        DeploymentSpec(name=name, machines=(MachineSpec(name="gpu"),), nodes=nodes),
        store=StateStore(tmp_path / "home"),
        reporter=stages.append,
        output=lambda machine, proc, stream, text: lines.append((proc, stream, text)),
        robot_domain_id=robot_domain,
    )
    return deployment, stages, lines


def _wait_for(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _json_line(path: str) -> dict[str, object]:
    _wait_for(lambda: Path(path).read_text().strip())
    found: dict[str, object] = json.loads(Path(path).read_text().splitlines()[0])
    return found


def test_command_line_files_prefix_env_and_output(tmp_path: Path, ament: Path, robot_domain: int) -> None:
    del ament
    params = tmp_path / "robot.yaml"
    params.write_text("/**:\n  ros__parameters:\n    speed: 2\n")
    more = tmp_path / "more.yaml"
    more.write_text("/ns/reporter:\n  ros__parameters:\n    speed: 3\n")
    model = tmp_path / "model.bin"
    model.write_bytes(b"\x00weights")
    reporter = NodeSpec(
        name="reporter",
        namespace="/ns",
        package="tests",
        executable="report_args",
        machine="gpu",
        arguments=("plain",),
        ros_arguments=("--log-level", "debug"),
        files=(
            ShippedFile(name="params-1-robot.yaml", source=str(params)),
            ShippedFile(name="params-2-more.yaml", source=str(more)),
            ShippedFile(name="model.bin", source=str(model)),
        ),
        parameter_files=("params-1-robot.yaml", "params-2-more.yaml"),
        parameters=(("flag", True),),
        remappings=(("in", "/camera/image"),),
        env=(("MINE", "yes"),),
        prefix=("env", "FROM_PREFIX=1"),
        output="log",
        log_cmd=True,
    )
    deployment, stages, lines = _deployment(tmp_path, robot_domain, "node-args", reporter)
    deployment.up()
    try:
        state = deployment.state
        (record,) = [r for r in state.processes if r.role == "node"]
        assert record.name == "ns.reporter"
        files_dir = Path(state.hosts[0].workdir) / "files" / "ns.reporter"
        seen = _json_line(record.stdout_path)
        _wait_for(lambda: ("ns.reporter", "stderr", "to stderr") in lines)
    finally:
        deployment.down()
    assert seen["argv"] == [
        "plain",
        *("--ros-args", "--log-level", "debug"),
        *("--ros-args", "-r", "__node:=reporter", "-r", "__ns:=/ns"),
        *("--params-file", str(files_dir / "params-1-robot.yaml")),
        *("--params-file", str(files_dir / "params-2-more.yaml")),
        *("-p", "flag:=true", "-r", "in:=/camera/image"),
    ]
    assert seen["files_dir"] == str(files_dir)
    assert seen["files"] == ["model.bin", "params-1-robot.yaml", "params-2-more.yaml"]
    assert (files_dir / "model.bin").read_bytes() == b"\x00weights"
    assert seen["from_prefix"] == "1"
    assert seen["mine"] == "yes"
    # output="log": stderr reaches the screen, stdout only the log files (as launch does).
    streams = {stream for proc, stream, _ in lines if proc == "ns.reporter"}
    assert streams == {"stderr"}
    commands = [s.message for s in stages if s.stage == "command"]
    assert len(commands) == 1
    assert "fogros_dist.node_launcher tests report_args -- plain --ros-args" in commands[0]


def test_respawn_restarts_a_node_up_to_its_retries(tmp_path: Path, ament: Path, robot_domain: int) -> None:
    del ament
    node = NodeSpec(
        name="flaky",
        package="tests",
        executable="run_once",
        machine="gpu",
        respawn=True,
        respawn_delay=0.2,
        respawn_max_retries=2,
    )
    deployment, stages, _lines = _deployment(tmp_path, robot_domain, "respawn", node)
    deployment.up()
    first = next(r for r in deployment.state.processes if r.role == "node")
    try:
        assert deployment.wait(threading.Event()) == 0
        records = [r for r in deployment.state.processes if r.role == "node"]
        exits = [e for e in deployment.state.exits if e.role == "node"]
    finally:
        deployment.down()
    # Every run's exit is recorded; the node, done for good, has no process record left, so
    # `down` stops nothing of it and `list` shows it dead.
    assert [(e.name, e.exit_code) for e in exits] == [("flaky", 0)] * 3
    assert records == []
    assert first.pid > 0
    assert Path(first.stdout_path).read_text().split() == ["ran", "ran", "ran"]
    kinds = [s.stage for s in stages if s.machine == "gpu" and s.stage in ("exited", "respawning", "gave-up")]
    assert kinds == ["exited", "respawning", "exited", "respawning", "exited", "gave-up"]
    assert [s.message for s in stages if s.stage == "respawning"] == [
        "node /flaky in 0.2 s (1 of 2)",
        "node /flaky in 0.2 s (2 of 2)",
    ]


def test_no_respawn_once_stopping_has_begun(tmp_path: Path, ament: Path, robot_domain: int) -> None:
    del ament
    node = NodeSpec(
        name="again", package="tests", executable="run_once", machine="gpu", respawn=True, respawn_delay=0.05
    )
    deployment, _stages, _lines = _deployment(tmp_path, robot_domain, "respawn-stop", node)
    deployment.up()
    out = Path(next(r for r in deployment.state.processes if r.role == "node").stdout_path)
    stop = threading.Event()
    supervisor = threading.Thread(target=deployment.wait, args=(stop,), daemon=True)
    supervisor.start()
    try:
        _wait_for(lambda: out.read_text().count("ran") >= 3)
        # `down` while the supervisor keeps respawning (launch sets `stop` only afterwards).
        deployment.down()
        runs = out.read_text().count("ran")
        time.sleep(1.0)
        assert out.read_text().count("ran") == runs
    finally:
        stop.set()
        supervisor.join(timeout=10)
    assert not supervisor.is_alive()


def test_a_dds_adapter_node_is_stopped_with_sigint(tmp_path: Path, ament: Path, robot_domain: int) -> None:
    del ament
    node = NodeSpec(name="dds_node", package="tests", executable="dds_node", machine="gpu")
    deployment, _stages, _lines = _deployment(tmp_path, robot_domain, "sigint-first", node)
    deployment.up()
    out = Path(next(r for r in deployment.state.processes if r.role == "node").stdout_path)
    try:
        _wait_for(lambda: "up" in out.read_text())
    finally:
        report = deployment.down()
    assert out.read_text().split() == ["up", "SIGINT"]
    assert next(e for e in report.exits if e.name == "dds_node").exit_code == 0
