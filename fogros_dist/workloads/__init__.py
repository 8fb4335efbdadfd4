"""Workloads robotics users offload: grasp planning, SLAM, an imitation policy.

Each workload is a package (``grasp/``, ``slam/``, ``policy/``) exposing ``WORKLOAD``, an object
that satisfies :class:`~fogros_dist.workloads.base.Workload`: its model, synthetic data, training
entry point (`fogros-dist train <name>`), serving node and benchmark requests
(`fogros-dist bench <name>`). Packages are imported only when that workload is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from fogros_dist.errors import ConfigError

if TYPE_CHECKING:
    from fogros_dist.workloads.base import Workload

__all__ = ["get_workload", "workload_names"]

_WORKLOADS = {
    "grasp": "fogros_dist.workloads.grasp",
    "slam": "fogros_dist.workloads.slam",
    "policy": "fogros_dist.workloads.policy",
}


def workload_names() -> list[str]:
    """The workloads `train` and `bench` accept."""
    return sorted(_WORKLOADS)


def get_workload(name: str) -> Workload:
    """The workload called ``name``; ConfigError naming the known ones otherwise."""
    module_name = _WORKLOADS.get(name)
    if module_name is None:
        msg = f"unknown workload {name!r}: use one of {', '.join(workload_names())}"
        raise ConfigError(msg)
    workload: Workload = importlib.import_module(module_name).WORKLOAD
    return workload
