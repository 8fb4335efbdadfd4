"""The SSHHost provider: any machine you can reach over SSH (a lab GPU server, an edge box).

It provisions nothing: the machine exists. ``create`` connects (host key verified against
known_hosts; an unknown host only recorded if the user asked), probes the host and prepares the
deployment's directory there; ``prepare`` installs fogros_dist's runtime offline (once: cached by a
stamp) while pushing the workspace (only what changed). Everything else is
:class:`~fogros_dist.remote.machine.RemoteMachines`, shared with the cloud providers.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from fogros_dist.errors import ProvisionError
from fogros_dist.providers.base import Capabilities, Provider, ProvisionContext
from fogros_dist.providers.remote_verbs import RemoteMachineVerbs
from fogros_dist.providers.ssh.options import SSHOptions, parse_options
from fogros_dist.remote.forward import establish_forwarded
from fogros_dist.remote.machine import RemoteMachines
from fogros_dist.remote.runner import RetryPolicy
from fogros_dist.remote.runtime_needs import wants_torch
from fogros_dist.remote.target import resolve_target
from fogros_dist.spec import Host, MachineSpec

__all__ = ["SSHProvider"]

# The ROS domain a host's own graph uses, unless set: taken from the same high range as Local
# machines and clear of the robot's, so even an "SSH host" that is this robot cannot collide.
_DOMAIN_RANGE = range(120, 233)


class SSHProvider(RemoteMachineVerbs):
    """Machines reached over SSH; see the module docstring."""

    name: ClassVar[str] = "ssh"
    capabilities: ClassVar[Capabilities] = Capabilities(remote=True)

    def __init__(self, *, retry: RetryPolicy | None = None, cache_dir: Path | None = None) -> None:
        """Args:
        retry: how hard to try connecting (default: 4 attempts, backoff from 0.5 s to 4 s).
        cache_dir: the robot's wheel cache (default ``$FOGROS_DIST_CACHE`` or ~/.cache/fogros_dist).
        """
        self._machines = RemoteMachines(provider=self.name, retry=retry, cache_dir=cache_dir)

    def validate(self, machine: MachineSpec) -> None:
        """Reject unknown options, wrong types and out-of-range values, naming them."""
        parse_options(machine)

    def create(self, machine: MachineSpec, ctx: ProvisionContext) -> Host:
        """Connect (``ssh-ready``), probe the host and prepare the deployment's directory there.

        Raises:
            ConfigError: bad options or SSH config.
            ProvisionError: the host cannot be reached, refuses the key, is unknown or changed,
                or lacks Python 3.10+ (one line each, naming the stage and the fix).
            Cancelled: ``ctx.cancel`` was set while connecting or probing (``waiting`` progress
                lines show each failed attempt meanwhile).
        """
        options = parse_options(machine)
        target = resolve_target(
            machine=machine.name,
            host=options.host,
            user=options.user,
            port=options.port,
            identity_file=options.identity_file,
            known_hosts=options.known_hosts,
            trust_new_host=options.trust_new_host,
            ssh_config=options.ssh_config,
            proxy_jump=options.proxy_jump,
        )
        # Behind jump hosts the robot cannot reach the bridge port: it is forwarded over SSH.
        establish = partial(establish_forwarded, self._machines) if target.jumps else self._machines.establish
        return establish(
            target,
            dataclasses.replace(options.settings, torch=wants_torch(options.torch, ctx.nodes)),
            deployment=ctx.deployment,
            domain_id=_pick_domain(machine.name, options, ctx.used_domain_ids),
            progress=ctx.progress,
            workspace=ctx.workspace,
            cancel=ctx.cancel,
        )

    def terminate(self, host: Host) -> None:
        """Stop leftovers, remove the DDS config, close the connection; the host itself stays."""
        self._machines.terminate(host)

    def reclaim(self, machine: MachineSpec, *, deployment: str) -> tuple[str, ...]:
        """The host exists before and after; nothing runs there before the Host is recorded."""
        del machine, deployment
        return ()

    def remaining(self, host: Host) -> tuple[str, ...]:
        """The host is not ours to remove; its processes the engine checks itself."""
        del host
        return ()


def _pick_domain(machine: str, options: SSHOptions, used: frozenset[int]) -> int:
    if options.domain_id is not None:
        return options.domain_id
    for domain in _DOMAIN_RANGE:
        if domain not in used:
            return domain
    msg = (
        f"machine {machine!r}: every ROS domain in {_DOMAIN_RANGE.start}..{_DOMAIN_RANGE.stop - 1} is "
        f"taken on this robot: run 'fogros-dist down' on some deployments, or set option domain_id"
    )
    raise ProvisionError(msg)


if TYPE_CHECKING:
    # mypy proves here that SSHProvider (and so RemoteProcess) implements the Provider protocol.
    _PROVIDER: type[Provider] = SSHProvider
