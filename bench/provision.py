"""Time from `up` to a user's own node running on an SSH host, over an emulated 50 Mbit/s link.

The host is a real OpenSSH server in a network namespace (test/remote/sshlab.py), joined to this
machine by a veth pair shaped with ``tc tbf rate 50mbit burst 32kbit latency 400ms`` on both ends
(netem is unavailable here, so no added delay). The node is a user package's: ``greeter`` from the
workspace of test/workspace_helpers.py (ament_python, with an in-workspace dependency), bridged
back to this machine's DDS graph. Its workspace also holds a generated data package the node
depends on: 5,000 files, 50 MB, random (incompressible) bytes. Only the packages the node needs
travel (an unrelated package stays behind), and the host builds them with colcon.

Scenarios, each a full ``Deployment.up()`` (timed) followed by ``down()`` (not timed):

  cold host       a fresh host: runtime wheels and the packages travel, venv and packages are built
  cold workspace  the runtime is there; another workspace (a copy) travels and is built first time
  warm            the same again, nothing changed: nothing installed, pushed or built
  incremental     10 data files changed since the last up: they travel, the packages are rebuilt

Targets: warm under 3 s; cold: the time beside the build within 1.3x of the link's transfer time
for the bytes actually sent (rsync's "Total bytes sent", or the SFTP byte count; transfer time =
bytes * 8 / 50e6). The colcon build's own time is a column of its own (from the ``synced`` stage to
``built``). The robot's wheel cache is filled before timing: downloading wheels is robot-side
work, not the link's.

Usage: python bench/provision.py [--files N] [--megabytes M] [--keep DIR]
Needs root (namespaces, tc). Writes bench/results/provision.json and the table in BENCHMARKS.md
between ``<!-- provision:begin -->`` / ``<!-- provision:end -->``. Every process it starts is
stopped by PID; the namespace, the veth pair and the qdiscs go with the host.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "test" / "remote"))
sys.path.insert(0, str(ROOT / "test"))

from sshlab import LabHost, SSHLab, lab_unavailable, ssh_options  # noqa: E402
from workspace_helpers import greeter_deployment, python_package, user_workspace  # noqa: E402

from fogros_dist.deploy.engine import Deployment, Stage  # noqa: E402
from fogros_dist.deploy.state import StateStore  # noqa: E402
from fogros_dist.remote import bootstrap, machine, selfwheel, workspace_build  # noqa: E402
from fogros_dist.remote.runner import SSHRunner  # noqa: E402
from fogros_dist.remote.sync import SyncStats  # noqa: E402
from fogros_dist.remote.target import resolve_target  # noqa: E402
from fogros_dist.remote.wheelhouse import TargetPython, ensure_wheelhouse, runtime_requirements  # noqa: E402
from fogros_dist.ros.cyclone_config import apply_loopback_config  # noqa: E402
from fogros_dist.spec import DeploymentSpec, MachineSpec  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "provision.json"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
BEGIN, END = "<!-- provision:begin -->", "<!-- provision:end -->"
RATE_BPS = 50e6
TC = ["tbf", "rate", "50mbit", "burst", "32kbit", "latency", "400ms"]
COLD_TARGET = 1.3
WARM_TARGET_S = 3.0
# The robot's DDS domain: high, so a lab's everyday domains (0..) are not disturbed.
ROBOT_DOMAIN = random.Random(os.getpid()).randrange(200, 233)


class Recorder:
    """Counts what went over the link: every push (workspace and wheels) and the fogros_dist wheel."""

    def __init__(self) -> None:
        self.pushes: list[tuple[str, SyncStats]] = []
        self.install_bytes = 0
        self._lock = threading.Lock()

    @contextmanager
    def installed(self) -> Iterator[None]:
        real_push = workspace_build.push_directory
        real_boot_push = bootstrap.push_directory
        real_install = machine.start_install

        def push(what: str, real: Callable[..., SyncStats]) -> Callable[..., SyncStats]:
            def wrapper(*args: Any, **kwargs: Any) -> SyncStats:
                stats = real(*args, **kwargs)
                with self._lock:
                    self.pushes.append((what, stats))
                return stats

            return wrapper

        def install(*args: Any, **kwargs: Any) -> bootstrap.Install:
            found = real_install(*args, **kwargs)
            pushed = sum(s.bytes_sent for w, s in self.pushes if w == "wheels")
            # Install.bytes_sent = the wheels pushed + the fogros_dist wheel (over SFTP).
            self.install_bytes += found.bytes_sent - pushed
            return found

        workspace_build.push_directory = push("workspace", real_push)  # type: ignore[assignment]
        bootstrap.push_directory = push("wheels", real_boot_push)  # type: ignore[assignment]
        machine.start_install = install  # type: ignore[assignment]
        try:
            yield
        finally:
            workspace_build.push_directory = real_push  # type: ignore[assignment]
            bootstrap.push_directory = real_boot_push  # type: ignore[assignment]
            machine.start_install = real_install  # type: ignore[assignment]

    def reset(self) -> None:
        with self._lock:
            self.pushes.clear()
            self.install_bytes = 0

    def bytes_sent(self) -> int:
        with self._lock:
            return sum(s.bytes_sent for _, s in self.pushes) + self.install_bytes


def make_workspace(root: Path, *, files: int, total_bytes: int, seed: int = 7) -> None:
    """The user workspace (greeter, greet_words, unrelated) plus ``bench_data``, a package greeter
    depends on holding ``files`` files totalling ``total_bytes`` random bytes (sizes vary 10x)."""
    user_workspace(root)
    data = python_package(root / "src", "bench_data", modules={})
    rng = random.Random(seed)
    weights = [rng.uniform(0.2, 2.0) for _ in range(files)]
    scale = total_bytes / sum(weights)
    for i, weight in enumerate(weights):
        path = data / "data" / f"part{i // 100:02d}" / f"module_{i:04d}.dat"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(int(weight * scale)))
    manifest = root / "src" / "greeter" / "package.xml"
    manifest.write_text(
        manifest.read_text().replace(
            "<exec_depend>", "<exec_depend>bench_data</exec_depend>\n  <exec_depend>", 1
        )
    )
    # What a colcon workspace also has and must not travel.
    (root / "build").mkdir(exist_ok=True)
    (root / "build" / "junk.o").write_bytes(b"\0" * 5_000_000)


def spec_for(name: str, host: LabHost, lab: SSHLab, known_hosts: Path, workspace: Path) -> DeploymentSpec:
    options = ssh_options(lab, host, known_hosts, ros_setup="none")
    machine = MachineSpec(name="gpu", provider="ssh", options=tuple(sorted(options.items())))
    return greeter_deployment(name, machine, workspace=str(workspace))


def shape(host: LabHost) -> None:
    """50 Mbit/s token buckets on both ends of the host's veth pair."""
    subprocess.run(["tc", "qdisc", "replace", "dev", host.veth_root, "root", *TC], check=True)
    subprocess.run(
        ["ip", "netns", "exec", host.netns, "tc", "qdisc", "replace", "dev", host.veth_host, "root", *TC],
        check=True,
    )


_RECEIVER = """
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((sys.argv[1], 9999))
server.listen()
print("listening", flush=True)
conn, _ = server.accept()
total = 0
while chunk := conn.recv(1 << 20):
    total += len(chunk)
print(total, flush=True)
"""


def measure_tcp(host: LabHost, size: int = 20_000_000) -> float:
    """Payload Mbit/s of one TCP stream through the shaped link (what any push can reach)."""
    receiver = subprocess.Popen(
        ["ip", "netns", "exec", host.netns, sys.executable, "-c", _RECEIVER, host.address],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None
        receiver.stdout.readline()
        data = os.urandom(size)
        started = time.monotonic()
        with socket.create_connection((host.address, 9999)) as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            received = int(receiver.stdout.readline())
        seconds = time.monotonic() - started
    finally:
        receiver.kill()
        receiver.wait()
    return received * 8 / seconds / 1e6


def measure_shell(lab: SSHLab, host: LabHost, known_hosts: Path) -> float:
    """Seconds one SSH command takes on a live connection (the user's login shell starting)."""
    target = resolve_target(
        machine="gpu",
        host=host.address,
        port=host.port,
        user="root",
        identity_file=str(lab.client_key),
        known_hosts=str(known_hosts),
        ssh_config=str(lab.root / "no-ssh-config"),
    )
    runner = SSHRunner(target)
    try:
        runner.connect()
        times = []
        for _ in range(3):
            started = time.monotonic()
            runner.run(["true"])
            times.append(time.monotonic() - started)
    finally:
        runner.close()
    return min(times)


def run_scenario(
    name: str, spec: DeploymentSpec, store: StateStore, recorder: Recorder, target: str
) -> dict[str, Any]:
    """One timed up (and an untimed down); ``target`` is "cold", "warm" or "" (none)."""
    recorder.reset()
    stages: list[Stage] = []
    ready = threading.Event()
    ready_at: list[float] = []
    started = time.monotonic()

    def output(machine_name: str, process: str, stream: str, text: str) -> None:
        del stream
        if machine_name == "gpu" and process == "greeter" and "ready on" in text and not ready.is_set():
            ready_at.append(time.monotonic() - started)
            ready.set()

    deployment = Deployment(
        spec, store=store, reporter=stages.append, output=output, robot_domain_id=ROBOT_DOMAIN
    )
    started = time.monotonic()
    deployment.up()
    up_s = time.monotonic() - started
    ready.wait(30)
    deployment.down()
    sent = recorder.bytes_sent()
    transfer_s = sent * 8 / RATE_BPS
    at = {s.stage: s.elapsed for s in stages if s.machine == "gpu"}
    build_s = at["built"] - at["synced"] if "built" in at and "synced" in at else 0.0
    row: dict[str, Any] = {
        "scenario": name,
        "up_s": round(up_s, 2),
        "build_s": round(build_s, 2),
        "built": "built" in at,
        "node_ready_s": round(ready_at[0], 2) if ready_at else None,
        "bytes_sent": sent,
        "transfer_s": round(transfer_s, 2),
        "pushes": [
            {
                "what": what,
                "method": s.method,
                "files_sent": s.files_sent,
                "bytes_sent": s.bytes_sent,
                "seconds": round(s.seconds, 2),
            }
            for what, s in recorder.pushes
        ],
        "stages": [(s.stage, s.machine, round(s.elapsed, 2), s.message) for s in stages],
    }
    beside_build = up_s - build_s
    row["ratio"] = round(beside_build / transfer_s, 2) if transfer_s and target == "cold" else None
    if target == "cold":
        row["target_met"] = bool(transfer_s) and beside_build <= COLD_TARGET * transfer_s
    elif target == "warm":
        row["target_met"] = up_s < WARM_TARGET_S
    else:
        row["target_met"] = None
    print(
        f"{name:16s} up {up_s:6.2f} s  build {build_s:5.2f} s  node ready {row['node_ready_s']} s"
        f"  sent {sent / 1e6:7.2f} MB  link time {transfer_s:6.2f} s",
        flush=True,
    )
    return row


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"`up` to a user package's node started on a namespace SSH host over a tc tbf 50 Mbit/s link; "
        f"the packages it needs (3, built there with colcon) hold {meta['files']} files / "
        f"{meta['megabytes']} MB random bytes; {meta['cpus']} CPUs, load average "
        f"{meta['load_before']} before the run, run took {meta['duration_s']:.0f} s. "
        f"Link time = bytes sent x 8 / 50e6. Measured through the link: one TCP stream "
        f"{meta['tcp_mbit']} Mbit/s of payload; one SSH command on an open connection "
        f"{meta['ssh_command_s']:.2f} s (the login shell).",
        f"Targets: cold: up minus the build <= {COLD_TARGET} x link time; warm < {WARM_TARGET_S:g} s "
        f"(nothing installed, pushed or built).",
        "",
        "| scenario | up (s) | colcon build (s) | node ready (s) | bytes sent | link time (s) "
        "| (up - build) / link time | target met |",
        "|---|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for row in rows:
        ratio = f"{row['ratio']:.2f}" if row.get("ratio") else "n/a"
        met = {True: "yes", False: "**no**", None: "(none)"}[row["target_met"]]
        ready = f"{row['node_ready_s']:.2f}" if row["node_ready_s"] is not None else "n/a"
        build = f"{row['build_s']:.2f}" if row["built"] else "cached"
        lines.append(
            f"| {row['scenario']} | {row['up_s']:.2f} | {build} | {ready} | "
            f"{row['bytes_sent'] / 1e6:.2f} MB | {row['transfer_s']:.2f} | {ratio} | {met} |"
        )
    return "\n".join(lines)


def write_markdown(table: str) -> None:
    text = BENCHMARKS_MD.read_text()
    block = f"{BEGIN}\n{table}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        BENCHMARKS_MD.write_text(head + block + tail)
    else:
        BENCHMARKS_MD.write_text(text.rstrip() + "\n\n" + block + "\n")


def run_all(lab: SSHLab, work: Path, args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Build the host, shape its link, measure it, then time every scenario; (rows, link facts)."""
    host = lab.add_host("bench", port=22)
    known_hosts = work / "known_hosts"
    known_hosts.write_text(host.known_hosts_line())
    shape(host)
    link = {
        "tcp_mbit": round(measure_tcp(host), 1),
        "ssh_command_s": round(measure_shell(lab, host, known_hosts), 2),
    }
    print(
        f"through the link: one TCP stream {link['tcp_mbit']} Mbit/s; "
        f"one SSH command {link['ssh_command_s']} s"
    )
    workspace = work / "ws"
    make_workspace(workspace, files=args.files, total_bytes=args.megabytes * 1_000_000)
    # Another workspace with the same packages: on the host it is a workspace of its own.
    other = work / "ws-copy"
    shutil.copytree(workspace, other, symlinks=True)
    # Robot-side work, not the link's: fill the wheel cache for the host's Python first.
    ensure_wheelhouse(
        requirements=runtime_requirements(torch=False, build_tools=True),
        target=TargetPython.here(),
        cache_dir=Path(os.environ["FOGROS_DIST_CACHE"]),
        machine="gpu",
    )
    store = StateStore(work / "home")
    recorder = Recorder()
    rows = []
    with recorder.installed():
        first = spec_for("bench-a", host, lab, known_hosts, workspace)
        second = spec_for("bench-b", host, lab, known_hosts, other)
        rows.append(run_scenario("cold host", first, store, recorder, "cold"))
        rows.append(run_scenario("cold workspace", second, store, recorder, "cold"))
        rows.append(run_scenario("warm", second, store, recorder, "warm"))
        rng = random.Random(11)
        for path in sorted(other.rglob("*.dat"))[:10]:
            path.write_bytes(rng.randbytes(path.stat().st_size))
        rows.append(run_scenario("incremental (10 files)", second, store, recorder, ""))
    return rows, link


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--megabytes", type=int, default=50)
    parser.add_argument("--keep", type=Path, help="keep the lab directory here (host logs, venv)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave the results alone")
    args = parser.parse_args(argv)
    reason = lab_unavailable()
    if reason:
        print(f"provision benchmark: {reason}", file=sys.stderr)
        return 2
    apply_loopback_config(environ={"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"})
    # The robot's code is what it was when the run began, even if the checkout is edited meanwhile
    # (a changed file would rightly reinstall fogros_dist on the host and blur "warm").
    snapshot = selfwheel.package_files()
    selfwheel.package_files = lambda: snapshot  # type: ignore[assignment]
    t0 = time.monotonic()
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="fogros-provision-"))
    os.environ["FOGROS_DIST_CACHE"] = str(work / "robot-cache")
    lab = SSHLab(args.keep or work / "lab")
    try:
        rows, link = run_all(lab, work, args)
    finally:
        lab.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    meta = {
        **link,
        "files": args.files,
        "megabytes": args.megabytes,
        "cpus": os.cpu_count(),
        "load_before": round(load_before, 2),
        "duration_s": round(time.monotonic() - t0, 1),
        "python": platform.python_version(),
        "link": " ".join(TC),
    }
    print(markdown(rows, meta))
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
        write_markdown(markdown(rows, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
