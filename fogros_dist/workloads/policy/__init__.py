"""Imitation policy workload: behaviour cloning with open-loop action chunks.

Modules, one job each (data-parallel training wraps model, dataset and loop unchanged):
``sim`` (the XY-stage reach task and its scripted expert), ``messages`` (topics and standard
message types), ``record`` (demonstrations as rosbag2 bags), ``bags`` (finding and opening a
user's bags, read only), ``mapping`` (the topic mapping as options and TOML, typed from a bag),
``fieldpaths`` (field paths checked against message definitions), ``dataset`` (bags ->
resampled, normalised action-chunk samples), ``model`` (the MLP policy and its file format),
``train`` (the loop), ``heldout`` (action error on held-out bags vs the mean-action baseline),
``evaluate`` (success rates with Wilson intervals), ``node`` (``policy_node``), and ``workload``
(what `fogros-dist train/bench policy` call).
"""

from __future__ import annotations

from fogros_dist.workloads.policy.workload import PolicyWorkload

__all__ = ["WORKLOAD", "PolicyWorkload"]

WORKLOAD = PolicyWorkload()
