"""``train_agent``: the node a training fleet runs on each of its machines.

A fleet (``fogros-dist train <workload> --on FLEET``) is an ordinary deployment whose only node
per machine is this one, so every provider (Local, SSHHost, AWS) provisions, prepares (torch in
the runtime), supervises and tears it down as it does any node. The rendezvous is known only
once every machine exists (the head's address on the fleet's network), so the agent waits for the
robot to upload ``rendezvous.json`` into its files directory (``$FOGROS_DIST_NODE_FILES``), then
becomes torchrun (``exec``: the provider's stop signals reach torch elastic's agent itself, which
stops its workers).

Before it does, it finds the address it reaches the head from (the kernel's route to the head:
``ip route get``) and hands it to torchrun (``--local-addr``) and to gloo
(``GLOO_SOCKET_IFNAME``): a namespace or a cloud machine's host name often resolves to an
address no other machine can reach, and gloo would listen there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from fogros_dist.errors import ConfigError
from fogros_dist.train.local_fleet import RUN_MARK_ENV, agent_argv
from fogros_dist.train.options import DEFAULT_JOIN_WAIT_S, FleetOptions, NodeRange

__all__ = ["RENDEZVOUS_FILE", "Rendezvous", "main", "route_to"]

RENDEZVOUS_FILE = "rendezvous.json"
# How long an agent waits for its rendezvous before giving up (the robot uploads it seconds after
# the last machine is ready; a robot that died meanwhile must not leave agents waiting forever).
WAIT_S = 900.0
_FILES_ENV = "FOGROS_DIST_NODE_FILES"


@dataclass(frozen=True, kw_only=True)
class Rendezvous:
    """What one machine's agent needs to join the run (written by the robot, one per machine)."""

    machine: str
    run_id: str
    endpoint: str  # head address:port of the c10d store
    is_host: bool
    min_nodes: int
    max_nodes: int
    nproc_per_node: int
    max_restarts: int
    workload_argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    join_wait_s: int = DEFAULT_JOIN_WAIT_S

    def to_json(self) -> str:
        """The file's text."""
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Rendezvous:
        """Parse the file; one ConfigError line if it is not one."""
        try:
            data = json.loads(text)
            return cls(
                machine=str(data["machine"]),
                run_id=str(data["run_id"]),
                endpoint=str(data["endpoint"]),
                is_host=bool(data["is_host"]),
                min_nodes=int(data["min_nodes"]),
                max_nodes=int(data["max_nodes"]),
                nproc_per_node=int(data["nproc_per_node"]),
                max_restarts=int(data["max_restarts"]),
                workload_argv=tuple(str(w) for w in data["workload_argv"]),
                env=tuple((str(k), str(v)) for k, v in data.get("env", ())),
                join_wait_s=int(data.get("join_wait_s", DEFAULT_JOIN_WAIT_S)),
            )
        except (ValueError, KeyError, TypeError) as err:
            msg = f"{RENDEZVOUS_FILE} is not a fleet rendezvous ({err}): it is written by the robot"
            raise ConfigError(msg) from err


def route_to(address: str) -> tuple[str, str]:
    """(source address, interface) this machine uses to reach ``address``; ("", "") if unknown
    (no ``ip``, or no route: then torch's own guesses stand)."""
    ip = shutil.which("ip") or ("/usr/sbin/ip" if Path("/usr/sbin/ip").exists() else None)
    if ip is None:
        return "", ""
    found = subprocess.run([ip, "-o", "route", "get", address], capture_output=True, text=True, check=False)
    source = re.search(r"\bsrc (\S+)", found.stdout)
    device = re.search(r"\bdev (\S+)", found.stdout)
    name = device.group(1) if device else ""
    if name == "lo":
        # The head reaching its own address: the route says loopback, the address lives on the
        # interface the others reach it through (which gloo must listen on).
        owner = subprocess.run(
            [ip, "-o", "addr", "show", "to", address], capture_output=True, text=True, check=False
        )
        fields = owner.stdout.split()
        name = fields[1] if len(fields) > 1 else name
    return (source.group(1) if source else "", name)


def _wait_for(path: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            msg = (
                f"no {RENDEZVOUS_FILE} in {path.parent} after {timeout:.0f} s: "
                "the robot that started this run is gone"
            )
            raise ConfigError(msg)
        time.sleep(0.2)
    time.sleep(0.1)  # the upload writes the whole (small) file at once; let a rename settle
    return path.read_text()


def main(argv: Sequence[str] | None = None) -> int:
    """Wait for the rendezvous, then exec torchrun; see the module's doc."""
    del argv  # launch's --ros-args and the node name: nothing for torchrun
    files = os.environ.get(_FILES_ENV, "")
    if not files:
        print(f"train_agent: ${_FILES_ENV} is not set: start it as a fleet's node", file=sys.stderr)
        return 2
    try:
        rendezvous = Rendezvous.from_json(_wait_for(Path(files) / RENDEZVOUS_FILE, WAIT_S))
    except ConfigError as err:
        print(f"train_agent: {err}", file=sys.stderr)
        return 2
    head = rendezvous.endpoint.rsplit(":", 1)[0]
    local_addr, device = route_to(head)
    env = dict(os.environ)
    env.update(rendezvous.env)
    env["FOGROS_DIST_MACHINE"] = rendezvous.machine
    env[RUN_MARK_ENV] = rendezvous.run_id
    if device and device != "lo":
        env.setdefault("GLOO_SOCKET_IFNAME", device)
    options = FleetOptions(
        nodes=NodeRange(rendezvous.min_nodes, rendezvous.max_nodes),
        nproc_per_node=rendezvous.nproc_per_node,
        max_restarts=rendezvous.max_restarts,
        join_wait_s=rendezvous.join_wait_s,
    )
    command = agent_argv(
        workload_argv=rendezvous.workload_argv,
        options=options,
        endpoint=rendezvous.endpoint,
        run_id=rendezvous.run_id,
        is_host=rendezvous.is_host,
        log_dir=Path(files) / "torchelastic",
        local_addr=local_addr or None,
    )
    print(
        f"[train:{rendezvous.machine}] joining {rendezvous.endpoint} as {local_addr or 'its host name'}"
        f"{f' ({device})' if device else ''}",
        flush=True,
    )
    return _become(command, env)


def _become(command: list[str], env: dict[str, str]) -> int:
    """Replace this process by ``command`` (never returns)."""
    os.execve(command[0], command, env)


if __name__ == "__main__":
    sys.exit(main())
