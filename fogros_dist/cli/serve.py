"""`fogros-dist serve DEPLOYMENT NODE MODEL`: hand a running node a new model, without a restart.

The node (grasp_planner, for one) loads it between requests and logs the old and new version.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Register the verb."""
    parser = sub.add_parser("serve", help="give a running node a new model (no restart)")
    parser.add_argument("deployment", help="deployment name")
    parser.add_argument("node", help="the node's name in the deployment")
    parser.add_argument("model", help="the model file (e.g. ~/.cache/fogros_dist/models/grasp.pt)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Upload the model and its pointer; print the version the node will load."""
    from fogros_dist.deploy.model_push import push_model

    served = push_model(args.deployment, args.node, Path(args.model).expanduser())
    print(f"{args.deployment}/{args.node}: model version {served.version} handed over ({served.file})")
    return 0
