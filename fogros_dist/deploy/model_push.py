"""A new model for a node of a running deployment, on whichever machine it runs.

``push_model`` reads the deployment's record (so any process on the robot can do it: the CLI, a
training run that just finished), finds the node's machine and provider, and hands the model over
with :func:`fogros_dist.workloads.model_updates.publish_model` into the node's files directory,
where the serving node picks it up between requests. The deployment is not restarted.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fogros_dist.deploy.node_command import files_dir
from fogros_dist.deploy.state import StateStore
from fogros_dist.errors import ConfigError, DeploymentError
from fogros_dist.registry import get_provider
from fogros_dist.workloads.model_updates import ServedModel, publish_model

__all__ = ["push_model"]


def push_model(
    deployment: str,
    node: str,
    model: Path,
    *,
    store: StateStore | None = None,
    metrics: Mapping[str, float] | None = None,
) -> ServedModel:
    """Give ``node`` of ``deployment`` the model file ``model``; return what it was told.

    Raises:
        ConfigError: no such model file, no such node, or a node that watches no files directory.
        UnknownDeployment, DeploymentError: the deployment is not recorded, or not running there.
    """
    if not model.is_file():
        msg = f"model file {model} does not exist: train one first (fogros-dist train ...)"
        raise ConfigError(msg)
    state = (store or StateStore()).load(deployment)
    spec = next((n for n in state.spec.nodes if node in {n.name, n.process_name}), None)
    if spec is None:
        known = ", ".join(n.name for n in state.spec.nodes) or "none"
        msg = f"deployment {deployment!r} has no node {node!r} (its nodes: {known})"
        raise ConfigError(msg)
    if not spec.files:
        msg = (
            f"node {node!r} was started without shipped files, so it watches no files directory for "
            f"new models: deploy it with its model shipped (files=[...{model.name}])"
        )
        raise ConfigError(msg)
    host = state.host(spec.machine)
    if host is None:
        msg = f"deployment {deployment!r}: machine {spec.machine!r} of node {node!r} is not provisioned"
        raise DeploymentError(msg)
    provider = get_provider(host.provider)
    where = files_dir(spec)
    return publish_model(
        lambda local, name: provider.upload(host, local, f"{where}/{name}"), model, metrics=metrics
    )
