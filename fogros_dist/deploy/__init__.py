"""Deployment core: plan -> provision -> bridge -> start -> teardown, recorded in a state store."""

from __future__ import annotations

from fogros_dist.deploy.engine import Deployment, Stage, TeardownReport, teardown_recorded
from fogros_dist.deploy.plan import Plan, make_plan
from fogros_dist.deploy.state import DeploymentState, StateStore

__all__ = [
    "Deployment",
    "DeploymentState",
    "Plan",
    "Stage",
    "StateStore",
    "TeardownReport",
    "make_plan",
    "teardown_recorded",
]
