"""`fogros-dist list`: every recorded deployment, its machines, nodes and uptime."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from fogros_dist.cli.output import table
from fogros_dist.deploy.state import StateStore
from fogros_dist.providers.local.process import process_alive

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Register the verb."""
    parser = sub.add_parser("list", help="list recorded deployments")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the deployments table (or JSON)."""
    states = StateStore().load_all()
    rows: list[dict[str, Any]] = []
    for state in states:
        supervised = state.supervisor is not None and process_alive(state.supervisor)
        rows.append(
            {
                "name": state.spec.name,
                "status": state.status
                if supervised or state.status == "failed"
                else f"{state.status} (orphaned)",
                "machines": [f"{h.machine}:{h.provider}@{h.address}" for h in state.hosts],
                "nodes": [f"{n.name}@{n.machine}" for n in state.spec.nodes],
                "uptime_s": round(time.time() - state.created_at, 1),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no deployments")
        return 0
    headers = ("NAME", "STATUS", "MACHINES", "NODES", "UPTIME")
    cells = [
        (
            str(r["name"]),
            str(r["status"]),
            ", ".join(r["machines"]),
            ", ".join(r["nodes"]),
            _duration(r["uptime_s"]),
        )
        for r in rows
    ]
    print(table(headers, cells))
    return 0


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
