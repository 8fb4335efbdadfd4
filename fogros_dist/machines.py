"""Machines a launch file or script can ask for: ``Local()``, and (later) ``SSHHost``, ``AWS``.

These only describe a machine (a frozen :class:`~fogros_dist.spec.MachineSpec`); nothing is
provisioned when a launch file is evaluated. The deployment engine does that when the launch runs.
"""

from __future__ import annotations

from fogros_dist.spec import MachineSpec, OptionValue

__all__ = ["Local", "Machine"]


def Machine(name: str, *, provider: str, **options: OptionValue) -> MachineSpec:
    """A machine from any registered provider, with provider-specific options."""
    return MachineSpec(name=name, provider=provider, options=tuple(sorted(options.items())))


def Local(name: str = "local", *, domain_id: int | None = None) -> MachineSpec:
    """Processes on this machine in their own ROS domain: the embedded default, no cloud needed."""
    options: dict[str, OptionValue] = {} if domain_id is None else {"domain_id": domain_id}
    return Machine(name, provider="local", **options)
