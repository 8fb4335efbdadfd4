"""The robot's own graph for self-contained runs (the demo, `fogros-dist bench`).

They play the robot on this machine: a free ROS domain, and Cyclone DDS confined to loopback so
nothing they publish leaves the machine. The settings go into this process's environment, so the
robot bridge (a child process) inherits them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fogros_dist.deploy.state import StateStore

__all__ = ["isolate_robot_graph"]

# Local machines take domains from 120 up; robot stand-ins stay below.
_ROBOT_DOMAINS = range(1, 100)


def isolate_robot_graph(store: StateStore, *, prefix: str = "fogros-robot-") -> int:
    """Pick a ROS domain no recorded deployment uses, point CYCLONEDDS_URI at a loopback-only
    config for it, and return the domain."""
    from fogros_dist.ros.cyclone_config import loopback_config

    with store.locked():
        used = store.used_domain_ids()
    domain = next(d for d in _ROBOT_DOMAINS if d not in used)
    config = Path(tempfile.mkdtemp(prefix=prefix)) / "cyclonedds.xml"
    config.write_text(loopback_config(domain))
    os.environ["CYCLONEDDS_URI"] = f"file://{config}"
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    return domain
