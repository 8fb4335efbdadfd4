"""`fogros-dist list [--region R ...]`: every deployment, its machines, GPUs, nodes, uptime and cost.

Recorded deployments come from this robot's state store, whatever their provider. With
``--region R`` the AWS region is asked too, and fogros_dist instances running there that this robot
has no record of are listed as ``untracked`` (another robot's, or left behind by a lost state).
Costs are estimates from the provider's price table (its date is printed), never a bill.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from fogros_dist.cli.output import table
from fogros_dist.deploy.state import DeploymentState, StateStore, UnreadableState
from fogros_dist.errors import FogError
from fogros_dist.providers.local.process import process_alive
from fogros_dist.registry import get_provider
from fogros_dist.remote.agent import Gpu, describe_gpus, gpus_from_json
from fogros_dist.remote.target import jumps_from_json
from fogros_dist.spec import Host, MachineSpec

__all__ = ["CostEstimator", "add_parser", "run"]


class _Estimate(Protocol):
    usd: float | None
    note: str

    def text(self) -> str: ...


@runtime_checkable
class CostEstimator(Protocol):
    """A provider that can estimate what a machine has cost so far."""

    def estimate_cost(self, machine: MachineSpec, *, seconds: float) -> _Estimate:
        """The estimate after ``seconds`` of running."""


def add_parser(sub: Any) -> None:
    """Register the verb."""
    parser = sub.add_parser("list", help="list deployments (and fogros_dist instances in AWS regions)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--region",
        action="append",
        default=[],
        metavar="REGION",
        help="also list fogros_dist instances in this AWS region that are not recorded here (repeatable)",
    )
    parser.add_argument("--profile", default="", help="AWS credentials profile for --region")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the deployments table (or JSON)."""
    states, unreadable = StateStore().scan()
    rows = [_recorded(state) for state in states] + [_unreadable(entry) for entry in unreadable]
    if args.region:
        recorded = {(s.spec.name, h.machine) for s in states for h in s.hosts if h.provider == "aws"}
        rows += _untracked(args.region, profile=args.profile, recorded=recorded)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no deployments")
        return 0
    headers = ("NAME", "STATUS", "MACHINES", "LINK", "GPUS", "NODES", "UPTIME", "COST")
    cells = [
        (
            str(r["name"]),
            str(r["status"]),
            ", ".join(r["machines"]),
            ", ".join(f"{machine}: {state}" for machine, state in r["link"].items()) or "-",
            _gpu_cell(r["gpus"]),
            ", ".join(r["nodes"]),
            _duration(r["uptime_s"]),
            str(r["cost"]),
        )
        for r in rows
    ]
    print(table(headers, cells))
    notes = sorted({note for r in rows for note in r["cost_notes"]})
    for note in notes:
        print(f"cost: {note}")
    return 0


def _status(state: DeploymentState) -> str:
    """What the record says, checked against the supervisor: a deployment whose supervisor is
    gone is orphaned whatever it last wrote; a failed one names why (and what is left)."""
    if state.status == "failed":
        if not state.leftovers:
            return f"failed: {state.error}"
        left = len(state.leftovers)
        return f"failed: {state.error}; {left} thing(s) left: 'fogros-dist down {state.spec.name}'"
    supervised = state.supervisor is not None and process_alive(state.supervisor)
    return state.status if supervised else f"{state.status} (orphaned: its supervisor is gone)"


def _node_cells(state: DeploymentState) -> list[str]:
    """``name@machine``, with ``(dead: ...)`` for a node whose process is no longer recorded as
    running (the supervisor records every exit), or whose Local process is gone."""
    cells = []
    running = {(r.machine, r.name): r for r in state.processes if r.role == "node"}
    for node in state.spec.nodes:
        cell = f"{node.name}@{node.machine}"
        record = running.get((node.machine, node.process_name))
        host = state.host(node.machine)
        # Local processes are checked here and now; remote ones through the supervisor's record.
        local = host is not None and host.provider == "local"
        if record is None or (local and not process_alive(record)):
            ended = [e for e in state.exits if (e.machine, e.name) == (node.machine, node.process_name)]
            how = f"exit {ended[-1].exit_code}" if ended else "not running"
            cell += f" (dead: {how})"
        cells.append(cell)
    return cells


def _link_states(state: DeploymentState) -> dict[str, str]:
    """The robot bridge's view of each machine's link, from its stats file ({} when it has none)."""
    from fogros_dist.net.stats import peer_link_states

    path = dict(state.stats_paths).get("robot")
    if not path or state.status in ("failed", "stopping"):
        return {}
    try:
        snapshot = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return peer_link_states(snapshot) if isinstance(snapshot, dict) else {}


def _unreadable(entry: UnreadableState) -> dict[str, Any]:
    """A deployment whose state file cannot be read: shown, never hidden."""
    return {
        "name": entry.name,
        "status": f"unreadable: {entry.reason} ({entry.path})",
        "link": {},
        "machines": [],
        "gpus": {},
        "nodes": [],
        "uptime_s": 0.0,
        "cost": "?",
        "cost_notes": [],
    }


def _recorded(state: DeploymentState) -> dict[str, Any]:
    uptime = time.time() - state.created_at
    total, notes = _cost(state, uptime)
    return {
        "name": state.spec.name,
        "status": _status(state),
        "machines": [_machine_cell(h) for h in state.hosts],
        # What each SSH-reached machine's probe saw (Local machines report none).
        "gpus": {
            h.machine: [dataclasses.asdict(g) for g in gpus_from_json(_connection(h).get("GPUS", ""))]
            for h in state.hosts
        },
        "nodes": _node_cells(state),
        # Each machine's link as the robot bridge last saw it (up, outages, DOWN for n s).
        "link": _link_states(state),
        "uptime_s": round(uptime, 1),
        "cost": total,
        "cost_notes": notes,
    }


def _cost(state: DeploymentState, seconds: float) -> tuple[str, list[str]]:
    """The deployment's estimated cost so far ("-" when no machine costs anything known)."""
    usd = 0.0
    unknown = False
    bounded = False
    notes: list[str] = []
    for host in state.hosts:
        try:
            machine = state.spec.machine(host.machine)
            provider = get_provider(host.provider)
        except FogError:
            continue
        if not isinstance(provider, CostEstimator):
            continue
        try:
            estimate = provider.estimate_cost(machine, seconds=seconds)
        except FogError:
            unknown = True
            continue
        notes.append(f"{host.machine}: {estimate.note}")
        if estimate.usd is None:
            unknown = True
        else:
            usd += estimate.usd
            bounded |= estimate.text().startswith("<=")
    if not notes:
        return "-", notes
    text = f"{'<=' if bounded else ''}${usd:.2f}"
    return (text + "+?" if unknown else text), notes


def _untracked(regions: list[str], *, profile: str, recorded: set[tuple[str, str]]) -> list[dict[str, Any]]:
    # Imported here: the AWS SDK loads only when a region is asked.
    from fogros_dist.providers.aws.fleet import cloud_machines
    from fogros_dist.providers.aws.pricing import estimate_cost

    rows = []
    for found in cloud_machines(regions=regions, profile=profile):
        if (found.deployment, found.machine) in recorded:
            continue
        uptime = time.time() - found.launch_time
        estimate = estimate_cost(
            instance_type=found.instance_type, region=found.region, seconds=uptime, spot=found.spot
        )
        rows.append(
            {
                "name": found.deployment,
                "status": f"untracked ({found.state}, owner {found.owner or '?'})",
                "link": {},
                "machines": [f"{found.machine}:aws/{found.region}@{found.public_ip or found.instance_id}"],
                "gpus": {},
                "nodes": [],
                "uptime_s": round(uptime, 1),
                "cost": estimate.text(),
                "cost_notes": [f"{found.machine} ({found.instance_id}): {estimate.note}"],
            }
        )
    return rows


def _connection(host: Host) -> dict[str, str]:
    # The SSH layer's connection record (FOGROS_SSH_* keys); empty for Local machines.
    return {k.removeprefix("FOGROS_SSH_"): v for k, v in host.env if k.startswith("FOGROS_SSH_")}


def _machine_cell(host: Host) -> str:
    """``gpu:ssh@10.0.0.5``; a host behind jump hosts by its own address, ``via`` the first one
    (its Host address is the robot's end of the forwarded bridge port)."""
    conn = _connection(host)
    jumps = conn.get("JUMPS", "")
    if not jumps:
        return f"{host.machine}:{host.provider}@{host.address}"
    via = jumps_from_json(jumps, machine=host.machine, known_hosts=conn.get("KNOWN_HOSTS", ""))
    hops = f" via {via[0].where}" + (f" (+{len(via) - 1})" if len(via) > 1 else "") if via else ""
    return f"{host.machine}:{host.provider}@{conn.get('HOSTNAME', host.address)}{hops}"


def _gpu_cell(gpus: dict[str, list[dict[str, str]]]) -> str:
    found = []
    for machine, listed in gpus.items():
        if listed:
            found.append(f"{machine}: {describe_gpus(tuple(Gpu(**g) for g in listed))}")
    return ", ".join(found) or "-"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
