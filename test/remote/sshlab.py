"""SSH hosts in network namespaces: real OpenSSH servers with their own addresses (tests, bench).

Each host is a network namespace joined to the root namespace by a veth pair on its own
10.231.<n>.0/24 subnet (root end .1, host end .2), running ``/usr/sbin/sshd -D`` from a generated
config with its own host key, port, authorized_keys and PID file. Every address lives only on
these veths; nothing is routed anywhere else. The subnet number is held with a file lock, so two
runs on one machine never share one, and a namespace left behind by a crashed run is removed
before its number is reused. Everything a host starts is stopped by PID when it is closed.

Hosts may share one LAN instead (``add_host(..., lan=lab.add_lan())``), as a lab's GPU servers
share a switch: each host's veth then joins a Linux bridge in the root namespace, which holds the
LAN's .1 address, and the hosts take .2, .3, ... of that one subnet, so they reach each other
directly (a training fleet's ranks need that) as well as from the root namespace.

A host may sit *behind* another (``add_host(..., behind=bastion)``), as a lab's GPU server sits
behind its bastion: its veth pair then joins the bastion's namespace instead of the root one, so
only the bastion can reach it (the root namespace has no route to its subnet, and a namespace
forwards nothing); its sshd listens only there.

Requires root, ``ip netns`` and ``/usr/sbin/sshd``; :func:`lab_unavailable` says why not.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sshd_support import SSHD, ensure_privilege_separation_dir

from fogros_dist.spec import OptionValue

__all__ = ["LabHost", "LabLan", "SSHLab", "acquire_lab", "jump_spec", "lab_unavailable", "release_lab"]

_LOCK_DIR = Path(tempfile.gettempdir()) / "fogros_dist_test_netns"
_SUBNETS = range(1, 250)
_PREFIX = "fdssh"


def lab_unavailable() -> str:
    """Why SSH hosts in namespaces cannot be built here ("" if they can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and veth pairs)"
    if shutil.which("ip") is None:
        return "needs iproute2 ('ip')"
    if not Path(SSHD).exists() or shutil.which("ssh-keygen") is None:
        return "needs openssh-server and openssh-client"
    probe = f"{_PREFIX}probe{os.getpid()}"[:15]
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"'ip netns' is unavailable here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return ""


def _ip(*args: str, netns: str = "", check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["ip", "netns", "exec", netns, "ip", *args] if netns else ["ip", *args]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        msg = f"{' '.join(argv)}: {result.stderr.strip()}"
        raise RuntimeError(msg)
    return result


def _keygen(path: Path) -> None:
    for stale in (path, path.with_name(path.name + ".pub")):
        stale.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True)


@dataclass
class LabLan:
    """One shared subnet: a bridge in the root namespace (.1) that hosts join (.2, .3, ...)."""

    index: int
    bridge: str
    gateway: str
    lock_fd: int
    next_host: int = 2

    def next_address(self) -> str:
        """The next free host address on the LAN."""
        address = f"10.231.{self.index}.{self.next_host}"
        self.next_host += 1
        return address


@dataclass
class LabHost:
    """One SSH host: a namespace, a veth pair, an sshd."""

    name: str
    index: int
    netns: str
    veth_root: str
    veth_host: str
    address: str
    gateway: str
    port: int
    directory: Path
    lock_fd: int
    sshd: subprocess.Popen[bytes] | None = None
    extra_pids: list[int] = field(default_factory=list)
    # The host whose namespace holds the other end of this host's veth (None: the root namespace).
    behind: LabHost | None = None
    # Lines appended to the generated sshd_config (e.g. "SetEnv PATH=...").
    sshd_extra: str = ""
    # The shared subnet the host's veth joins (None: a subnet of its own).
    lan: LabLan | None = None

    @property
    def host_key(self) -> Path:
        """The host's private host key."""
        return self.directory / "ssh_host_ed25519_key"

    @property
    def remote_dir(self) -> str:
        """A fogros_dist base directory private to this host (namespaces share the filesystem)."""
        return str(self.directory / "fogros")

    @property
    def known_hosts_name(self) -> str:
        """How known_hosts names this host."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"

    def known_hosts_line(self) -> str:
        """The host's known_hosts line (as ``ssh-keyscan`` would print it)."""
        key_type, blob = self.host_key.with_name(self.host_key.name + ".pub").read_text().split()[:2]
        return f"{self.known_hosts_name} {key_type} {blob}\n"

    def fingerprint(self) -> str:
        """``SHA256:...`` of the host key, from ssh-keygen itself."""
        out = subprocess.run(
            ["ssh-keygen", "-l", "-f", str(self.host_key)], capture_output=True, text=True, check=True
        ).stdout
        return out.split()[1]

    def namespace_pids(self) -> list[int]:
        """Every process running inside the host's namespace."""
        out = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True, check=False)
        return [int(p) for p in out.stdout.split()]

    def session_pids(self) -> list[int]:
        """The sshd processes serving connections (the listener's descendants named sshd)."""
        if self.sshd is None:
            return []
        children: dict[int, list[int]] = {}
        names: dict[int, str] = {}
        for status in Path("/proc").glob("[0-9]*/status"):
            with contextlib.suppress(OSError, ValueError):
                fields = dict(
                    line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
                )
                pid = int(status.parent.name)
                names[pid] = fields.get("Name", "").strip()
                children.setdefault(int(fields.get("PPid", "0")), []).append(pid)
        found = []
        stack = list(children.get(self.sshd.pid, []))
        while stack:
            pid = stack.pop()
            if names.get(pid, "").startswith("sshd"):
                found.append(pid)
                stack.extend(children.get(pid, []))
        return found

    def kill_sessions(self) -> int:
        """Cut every SSH connection to this host (SIGKILL its session sshd processes); the count."""
        pids = self.session_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)


class SSHLab:
    """A set of namespace SSH hosts sharing one client key pair."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.client_key = root / "client_ed25519"
        _keygen(self.client_key)
        self.hosts: list[LabHost] = []
        self.lans: list[LabLan] = []
        _LOCK_DIR.mkdir(exist_ok=True)
        _sweep_stale()

    def add_lan(self) -> LabLan:
        """A shared subnet for :meth:`add_host` (``lan=``), removed by :meth:`close`."""
        index, lock_fd = self._claim_subnet()
        lan = LabLan(index=index, bridge=f"{_PREFIX}{index}lan", gateway=f"10.231.{index}.1", lock_fd=lock_fd)
        _ip("link", "del", lan.bridge, check=False)  # a crashed run's
        _ip("link", "add", lan.bridge, "type", "bridge")
        _ip("addr", "add", f"{lan.gateway}/24", "dev", lan.bridge)
        _ip("link", "set", lan.bridge, "up")
        self.lans.append(lan)
        return lan

    def add_host(
        self,
        name: str,
        *,
        port: int = 22,
        behind: LabHost | None = None,
        sshd_extra: str = "",
        lan: LabLan | None = None,
    ) -> LabHost:
        """Build a namespace host running sshd on ``port``; return it once it accepts connections.

        ``behind``: reachable only from that host's namespace (see the module docstring).
        ``sshd_extra``: lines appended to its sshd_config.
        ``lan``: the host joins that shared subnet instead of having one of its own.
        """
        index, lock_fd = self._claim_subnet()
        netns = f"{_PREFIX}{index}"
        host = LabHost(
            name=name,
            index=index,
            netns=netns,
            veth_root=f"{_PREFIX}{index}r",
            veth_host=f"{_PREFIX}{index}h",
            address=lan.next_address() if lan is not None else f"10.231.{index}.2",
            gateway=lan.gateway if lan is not None else f"10.231.{index}.1",
            port=port,
            directory=self.root / name,
            lock_fd=lock_fd,
            behind=behind,
            sshd_extra=sshd_extra,
            lan=lan,
        )
        self.hosts.append(host)
        _remove_network(host)
        _ip("netns", "add", netns)
        _ip("link", "add", host.veth_root, "type", "veth", "peer", "name", host.veth_host)
        _ip("link", "set", host.veth_host, "netns", netns)
        # The near end: in the root namespace, or in the bastion's (then only it has the route).
        near = behind.netns if behind is not None else ""
        if behind is not None:
            _ip("link", "set", host.veth_root, "netns", near)
        if lan is not None:
            _ip("link", "set", host.veth_root, "master", lan.bridge)
        else:
            _ip("addr", "add", f"{host.gateway}/24", "dev", host.veth_root, netns=near)
        _ip("link", "set", host.veth_root, "up", netns=near)
        _ip("addr", "add", f"{host.address}/24", "dev", host.veth_host, netns=netns)
        _ip("link", "set", host.veth_host, "up", netns=netns)
        # The host's own loopback: its DDS graph lives there.
        _ip("link", "set", "lo", "up", netns=netns)
        host.directory.mkdir(parents=True, exist_ok=True)
        _keygen(host.host_key)
        (host.directory / "authorized_keys").write_text(
            self.client_key.with_name(self.client_key.name + ".pub").read_text()
        )
        self._write_config(host)
        self.start_sshd(host)
        return host

    def ensure_host(
        self, name: str, *, port: int = 22, behind: LabHost | None = None, sshd_extra: str = ""
    ) -> LabHost:
        """The host called ``name``, built on first use (hosts are shared by a whole session)."""
        for host in self.hosts:
            if host.name == name:
                return host
        return self.add_host(name, port=port, behind=behind, sshd_extra=sshd_extra)

    def start_sshd(self, host: LabHost) -> None:
        """Start (or restart) the host's sshd and wait until it accepts TCP connections."""
        self.stop_sshd(host)
        ensure_privilege_separation_dir()
        config = host.directory / "sshd_config"
        argv = [
            "ip",
            "netns",
            "exec",
            host.netns,
            SSHD,
            "-D",
            "-f",
            str(config),
            "-E",
            str(host.directory / "sshd.log"),
        ]
        log_file = host.directory / "sshd.log"
        # -E appends: only what this sshd writes counts.
        log_start = log_file.stat().st_size if log_file.exists() else 0
        # `ip netns exec` execs sshd, so this PID is sshd's own.
        host.sshd = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while True:
            if host.behind is not None:
                # Unreachable from here by design: sshd's own log says when it listens.
                listening = f"Server listening on {host.address} port {host.port}.".encode()
                if log_file.exists() and listening in log_file.read_bytes()[log_start:]:
                    return
            else:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection((host.address, host.port), timeout=0.5),
                ):
                    return
            if host.sshd.poll() is not None:
                log = (host.directory / "sshd.log").read_text(errors="replace")
                msg = f"sshd for {host.name} exited ({host.sshd.returncode}): {log[-500:]}"
                raise RuntimeError(msg)
            if time.monotonic() > deadline:
                msg = f"sshd for {host.name} did not listen on {host.address}:{host.port}"
                raise RuntimeError(msg)
            time.sleep(0.02)

    def stop_sshd(self, host: LabHost) -> None:
        """Stop the host's sshd (by PID) and the sessions it serves."""
        if host.sshd is None:
            return
        host.kill_sessions()
        if host.sshd.poll() is None:
            host.sshd.terminate()
            try:
                host.sshd.wait(timeout=5)
            except subprocess.TimeoutExpired:
                host.sshd.kill()
                host.sshd.wait()
        host.sshd = None

    def regenerate_host_key(self, host: LabHost) -> None:
        """Give the host a new host key (as a reinstall would) and restart its sshd."""
        _keygen(host.host_key)
        self.start_sshd(host)

    def close_host(self, host: LabHost) -> None:
        """Stop everything in the host's namespace (by PID) and remove the namespace and veth."""
        with contextlib.suppress(Exception):
            self.stop_sshd(host)
        _kill_namespace(host)
        _remove_network(host)
        os.close(host.lock_fd)
        if host in self.hosts:
            self.hosts.remove(host)

    def close(self) -> None:
        """Close every host, then every LAN."""
        for host in list(self.hosts):
            self.close_host(host)
        for lan in self.lans:
            _ip("link", "del", lan.bridge, check=False)
            os.close(lan.lock_fd)
        self.lans.clear()

    def _claim_subnet(self) -> tuple[int, int]:
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
        msg = "every test subnet 10.231.1-249.0/24 is in use"
        raise RuntimeError(msg)

    @staticmethod
    def _write_config(host: LabHost) -> None:
        d = host.directory
        (d / "sshd_config").write_text(
            f"Port {host.port}\n"
            f"ListenAddress {host.address}\n"
            f"HostKey {host.host_key}\n"
            f"PidFile {d / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {d / 'authorized_keys'}\n"
            "UsePAM no\n"
            "PermitRootLogin prohibit-password\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            # The key files live under a temporary directory (world-writable parents).
            "StrictModes no\n"
            "Subsystem sftp internal-sftp\n"
            "PrintMotd no\n"
            "ClientAliveInterval 5\n"
            "LogLevel VERBOSE\n" + host.sshd_extra
        )


def _sweep_stale() -> None:
    """Remove namespaces (and their veths) left by runs that were killed before cleaning up: a
    lab namespace whose subnet lock nobody holds belongs to no live run."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
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
        stale = LabHost(
            name=name,
            index=int(index),
            netns=name,
            veth_root=f"{name}r",
            veth_host=f"{name}h",
            address="",
            gateway="",
            port=0,
            directory=Path(),
            lock_fd=fd,
        )
        _remove_network(stale)
        os.close(fd)


def _kill_namespace(host: LabHost) -> None:
    # Anything still running in the namespace was started there by a test: stop it by PID.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = host.namespace_pids()
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 3
        while host.namespace_pids() and time.monotonic() < deadline:
            time.sleep(0.05)


def _remove_network(host: LabHost) -> None:
    existing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    if any(line.split()[0] == host.netns for line in existing.splitlines() if line.strip()):
        _kill_namespace(host)
        _ip("netns", "del", host.netns, check=False)
    # Deleting the namespace deletes its veth end, and with it the pair; a stale root end from a
    # half-built host is removed explicitly.
    _ip("link", "del", host.veth_root, check=False)


# -- one lab per test session, shared by the conftests of test/remote and test/providers/ssh ------

_shared: dict[str, object] = {}
_shared_lock = threading.Lock()


def acquire_lab(root: Path) -> SSHLab:
    """The session's lab (made on first use under ``root``); pair each call with release_lab()."""
    with _shared_lock:
        lab = _shared.get("lab")
        if not isinstance(lab, SSHLab):
            lab = SSHLab(root)
            _shared["lab"] = lab
            _shared["users"] = 0
        _shared["users"] = int(str(_shared["users"])) + 1
        return lab


def release_lab() -> None:
    """Drop one user of the session's lab; the last one closes it."""
    with _shared_lock:
        users = int(str(_shared.get("users", 0))) - 1
        _shared["users"] = users
        lab = _shared.get("lab")
        if users <= 0 and isinstance(lab, SSHLab):
            lab.close()
            _shared.clear()


def ssh_options(
    lab: SSHLab, host: LabHost, known_hosts: Path, **extra: OptionValue
) -> dict[str, OptionValue]:
    """Provider ``ssh`` machine options reaching ``host`` as root with the lab's key (no SSH config
    is read; fogros_dist's directory there is the host's own)."""
    options: dict[str, OptionValue] = {
        "host": host.address,
        "port": host.port,
        "user": "root",
        "identity_file": str(lab.client_key),
        "known_hosts": str(known_hosts),
        "ssh_config": str(lab.root / "no-ssh-config"),
        "remote_dir": host.remote_dir,
    }
    if host.behind is not None:
        options["proxy_jump"] = jump_spec(host)
    options.update(extra)
    return options


def jump_spec(host: LabHost) -> str:
    """The ProxyJump value that reaches ``host`` through the hosts it sits behind, as root."""
    chain = []
    via = host.behind
    while via is not None:
        chain.insert(0, f"root@{via.address}:{via.port}")
        via = via.behind
    return ",".join(chain)
