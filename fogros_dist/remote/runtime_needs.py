"""What a machine's runtime venv must hold for the nodes it runs (today: whether torch).

fogros_dist's own learned workloads import torch on the machine; other nodes do not need it, and
torch is by far the largest wheel, so a machine gets it only when one of its nodes needs it (or
its ``torch`` option says so).
"""

from __future__ import annotations

from collections.abc import Iterable

from fogros_dist.spec import NodeSpec

__all__ = ["TORCH_EXECUTABLES", "needs_torch", "wants_torch"]

# (package, executable) of the nodes that import torch: the grasp planner (GQ-CNN) and the
# imitation policy. slam_node (KISS-ICP) and edge_detector do not.
TORCH_EXECUTABLES = frozenset(
    {("fogros_dist", "grasp_planner"), ("fogros_dist", "policy_node"), ("fogros_dist", "train_agent")}
)


def needs_torch(nodes: Iterable[NodeSpec]) -> tuple[str, ...]:
    """The names of the nodes among ``nodes`` that need torch (empty: none does)."""
    return tuple(node.name for node in nodes if (node.package, node.executable) in TORCH_EXECUTABLES)


def wants_torch(option: bool | None, nodes: Iterable[NodeSpec]) -> bool:
    """A machine's ``torch`` option if set, else whether any of its nodes needs torch."""
    return option if option is not None else bool(needs_torch(nodes))
