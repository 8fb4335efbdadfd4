"""A real network link for bridge tests: a network namespace joined to the root one by a veth pair.

The "machine" lives in a namespace of its own (``fdlink<n>``) with its own loopback (its DDS graph
stays there) and one end of a veth pair on 10.232.<n>.0/24 (machine .2, robot .1 in the root
namespace). The link can be cut (``ip link set ... down``: the carrier goes on both ends, TCP
sees nothing but silence) and shaped (``tc qdisc ... tbf`` on both ends). Nothing is routed
anywhere else. The subnet number is held with a file lock so concurrent runs never share one; a
namespace left by a killed run is removed before its number is reused. Every process started
in the namespace is stopped by PID when the link is closed.

Requires root, ``ip`` and ``tc``; :func:`link_unavailable` says why not.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["NetnsLink", "link_unavailable", "open_link"]

_LOCK_DIR = Path(tempfile.gettempdir()) / "fogros_dist_test_netlink"
_SUBNETS = range(1, 250)
_PREFIX = "fdlink"


def link_unavailable() -> str:
    """Why a namespace link cannot be built here ("" if it can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth pairs, tc)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"needs iproute2 ('{tool}')"
    probe = f"{_PREFIX}probe{os.getpid()}"[:15]
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"'ip netns' is unavailable here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return ""


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        msg = f"{' '.join(argv)}: {result.stderr.strip()}"
        raise RuntimeError(msg)
    return result


@dataclass
class NetnsLink:
    """The machine's namespace and the veth pair that is its only link to the robot."""

    index: int
    netns: str
    veth_robot: str
    veth_machine: str
    robot_address: str
    machine_address: str
    lock_fd: int
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    def in_netns(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the machine's namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def start(self, argv: Sequence[str], *, machine: bool, **popen: object) -> subprocess.Popen[str]:
        """Start ``argv`` in the machine's namespace (``machine=True``) or here; stopped by PID
        when the link is closed."""
        command = self.in_netns(argv) if machine else list(argv)
        # `ip netns exec` execs the command, so the PID is the command's own.
        proc: subprocess.Popen[str] = subprocess.Popen(command, text=True, **popen)  # type: ignore[call-overload]
        self.processes.append(proc)
        return proc

    def down(self) -> None:
        """Cut the link: the machine's end goes down, so neither end has a carrier."""
        _run(["ip", "netns", "exec", self.netns, "ip", "link", "set", self.veth_machine, "down"])

    def up(self) -> None:
        """Restore the link cut by :meth:`down`."""
        _run(["ip", "netns", "exec", self.netns, "ip", "link", "set", self.veth_machine, "up"])

    def shape(self, *, rate: str, burst: str = "16kbit", latency: str = "50ms") -> None:
        """Limit both directions to ``rate`` with a token bucket (``tc qdisc ... tbf``); packets
        that would wait more than ``latency`` in the qdisc are dropped (TCP then resends)."""
        for prefix, dev in (([], self.veth_robot), (["ip", "netns", "exec", self.netns], self.veth_machine)):
            _run(
                [
                    *prefix,
                    "tc",
                    "qdisc",
                    "replace",
                    "dev",
                    dev,
                    "root",
                    "tbf",
                    "rate",
                    rate,
                    "burst",
                    burst,
                    "latency",
                    latency,
                ]
            )

    def stop_processes(self) -> None:
        """Stop every process this link started (SIGTERM, then SIGKILL), by PID."""
        for proc in reversed(self.processes):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        for proc in reversed(self.processes):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()

    def close(self) -> None:
        """Stop every process, remove the namespace and the veth pair, release the subnet."""
        self.stop_processes()
        _remove(self.netns, self.veth_robot)
        os.close(self.lock_fd)


def open_link() -> NetnsLink:
    """Build a fresh namespace and veth pair on a free subnet and return it, both ends up."""
    _LOCK_DIR.mkdir(exist_ok=True)
    _sweep_stale()
    index, lock_fd = _claim_subnet()
    link = NetnsLink(
        index=index,
        netns=f"{_PREFIX}{index}",
        veth_robot=f"{_PREFIX}{index}r",
        veth_machine=f"{_PREFIX}{index}m",
        robot_address=f"10.232.{index}.1",
        machine_address=f"10.232.{index}.2",
        lock_fd=lock_fd,
    )
    try:
        _remove(link.netns, link.veth_robot)
        ns = ["ip", "netns", "exec", link.netns]
        _run(["ip", "netns", "add", link.netns])
        _run(["ip", "link", "add", link.veth_robot, "type", "veth", "peer", "name", link.veth_machine])
        _run(["ip", "link", "set", link.veth_machine, "netns", link.netns])
        _run(["ip", "addr", "add", f"{link.robot_address}/24", "dev", link.veth_robot])
        _run(["ip", "link", "set", link.veth_robot, "up"])
        _run([*ns, "ip", "addr", "add", f"{link.machine_address}/24", "dev", link.veth_machine])
        _run([*ns, "ip", "link", "set", link.veth_machine, "up"])
        # The namespace's own loopback: the machine's DDS graph lives there.
        _run([*ns, "ip", "link", "set", "lo", "up"])
    except BaseException:
        link.close()
        raise
    return link


def _claim_subnet() -> tuple[int, int]:
    start = os.getpid() % len(_SUBNETS)
    order = list(_SUBNETS)[start:] + list(_SUBNETS)[:start]
    for index in order:
        fd = os.open(_LOCK_DIR / f"{index}.lock", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return index, fd
    msg = "every test subnet 10.232.1-249.0/24 is in use"
    raise RuntimeError(msg)


def _sweep_stale() -> None:
    """Remove namespaces left by runs killed before cleaning up (their subnet lock is free)."""
    listed = _run(["ip", "netns", "list"], check=False).stdout
    for line in listed.splitlines():
        name = line.split()[0] if line.strip() else ""
        index = name.removeprefix(_PREFIX)
        if not name.startswith(_PREFIX) or not index.isdigit():
            continue
        fd = os.open(_LOCK_DIR / f"{index}.lock", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        _remove(name, f"{name}r")
        os.close(fd)


def _remove(netns: str, veth_robot: str) -> None:
    listed = _run(["ip", "netns", "list"], check=False).stdout
    if any(line.split()[0] == netns for line in listed.splitlines() if line.strip()):
        # Anything still running there was started by a test: stop it by PID.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = [int(p) for p in _run(["ip", "netns", "pids", netns], check=False).stdout.split()]
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 3
            while _run(["ip", "netns", "pids", netns], check=False).stdout.split():
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        _run(["ip", "netns", "del", netns], check=False)
    # Deleting the namespace deletes its veth end and with it the pair; a half-built pair's
    # robot end is removed explicitly.
    _run(["ip", "link", "del", veth_robot], check=False)
