"""Everything fogros_dist runs in AWS regions, found by its tags, with or without local state.

`fogros-dist list --region R` shows the instances here that this robot has no record of (another
robot's, or left behind by a crash and a wiped home). `fogros-dist down --all --region R` first
lists (:func:`plan_sweep`) what carries the caller's owner tag (or any owner's, with
``--any-owner``): instances, spot requests, security groups, key pairs, volumes; once confirmed,
:func:`sweep` removes exactly what was listed and still exists (nothing created after the
listing), and the local key files of the key pairs it deletes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fogros_dist.providers.aws.config import caller_owner, key_paths
from fogros_dist.providers.aws.ec2 import (
    LIVE_STATES,
    TAG_DEPLOYMENT,
    TAG_MACHINE,
    TAG_OWNER,
    Ec2,
    Tagged,
    tag_filters,
)
from fogros_dist.providers.aws.leftovers import release_resources

__all__ = ["CloudMachine", "SweepPlan", "SweepReport", "cloud_machines", "plan_sweep", "sweep"]


@dataclass(frozen=True, kw_only=True)
class CloudMachine:
    """A pending or running fogros_dist instance, as its tags describe it."""

    region: str
    deployment: str
    machine: str
    owner: str
    instance_id: str
    instance_type: str
    state: str
    public_ip: str
    spot: bool
    launch_time: float


@dataclass(frozen=True, kw_only=True)
class SweepPlan:
    """What `down --all --region R` would remove in one region, before anything is removed."""

    region: str
    profile: str
    endpoint_url: str
    # The owner tag swept ("" with --any-owner: every owner).
    owner: str
    resources: tuple[Tagged, ...]
    # How many tagged resources of other owners the region holds (left alone).
    others: int

    def lines(self) -> list[str]:
        """The listing: a heading, then one line per resource (instances with their tags)."""
        whose = f"owner {self.owner}" if self.owner else "every owner"
        if not self.resources:
            spared = (
                f" ({self.others} of other owners left alone: --any-owner takes them)" if self.others else ""
            )
            return [f"region {self.region}: nothing of {whose} to remove{spared}"]
        counts = _counts(self.resources)
        lines = [f"region {self.region}: would remove {counts} of {whose}:"]
        for resource in self.resources:
            line = f"  {resource.describe()}"
            tags = [
                f"{label} {resource.tag(key)}"
                for label, key in (
                    ("deployment", TAG_DEPLOYMENT),
                    ("machine", TAG_MACHINE),
                    ("owner", TAG_OWNER),
                )
                if resource.tag(key)
            ]
            lines.append(f"{line}: {', '.join(tags)}" if tags else line)
        if self.others:
            lines.append(
                f"  ({self.others} resource(s) of other owners are left alone: --any-owner takes them)"
            )
        return lines


@dataclass(frozen=True, kw_only=True)
class SweepReport:
    """What `down --all --region R` removed in one region."""

    region: str
    removed: tuple[Tagged, ...]
    errors: tuple[str, ...]

    def counts(self) -> str:
        """E.g. ``2 instance(s), 2 security group(s), 2 key pair(s), 0 volume(s)``."""
        return _counts(self.removed)


def cloud_machines(
    *, regions: Sequence[str], profile: str = "", endpoint_url: str = ""
) -> list[CloudMachine]:
    """Every pending or running fogros_dist instance in ``regions``.

    Raises:
        ConfigError, ProvisionError: bad region or profile, no credentials, AWS refused.
    """
    found = []
    for region in regions:
        ec2 = Ec2(region=region, profile=profile, endpoint_url=endpoint_url, stage="listing")
        for instance in ec2.find_instances(states=LIVE_STATES, stage="listing"):
            found.append(
                CloudMachine(
                    region=ec2.region,
                    deployment=instance.tag(TAG_DEPLOYMENT),
                    machine=instance.tag(TAG_MACHINE),
                    owner=instance.tag(TAG_OWNER),
                    instance_id=instance.instance_id,
                    instance_type=instance.instance_type,
                    state=instance.state,
                    public_ip=instance.public_ip,
                    spot=instance.spot,
                    launch_time=instance.launch_time,
                )
            )
    return found


def plan_sweep(
    *, regions: Sequence[str], any_owner: bool = False, profile: str = "", endpoint_url: str = ""
) -> list[SweepPlan]:
    """List, per region, the fogros_dist-tagged resources a sweep would remove: the caller's
    (:func:`~fogros_dist.providers.aws.config.caller_owner`), or every owner's with ``any_owner``.
    Nothing is changed.

    Raises:
        ConfigError, ProvisionError: bad region or profile, no credentials, AWS refused.
    """
    owner = "" if any_owner else caller_owner()
    plans = []
    for region in regions:
        ec2 = Ec2(region=region, profile=profile, endpoint_url=endpoint_url, stage="sweeping")
        every = ec2.tagged(tag_filters(), stage="sweeping")
        mine = tuple(r for r in every if not owner or r.tag(TAG_OWNER) == owner)
        plans.append(
            SweepPlan(
                region=ec2.region,
                profile=profile,
                endpoint_url=endpoint_url,
                owner=owner,
                resources=mine,
                others=len(every) - len(mine),
            )
        )
    return plans


def sweep(
    plans: Sequence[SweepPlan], *, on_removed: Callable[[str, Tagged], None] | None = None
) -> list[SweepReport]:
    """Remove what each plan listed and still exists (in the order that lets each go), and the
    robot's key files of the key pairs removed.

    Args:
        plans: from :func:`plan_sweep`, as the user confirmed them.
        on_removed: told (region, resource) for each resource removed.

    Returns:
        One report per region; failures are in each report's ``errors``, not raised.
    """
    reports = []
    for plan in plans:
        if not plan.resources:
            reports.append(SweepReport(region=plan.region, removed=(), errors=()))
            continue
        ec2 = Ec2(region=plan.region, profile=plan.profile, endpoint_url=plan.endpoint_url, stage="sweeping")
        removed: list[Tagged] = []

        def note(resource: Tagged, region: str = plan.region, into: list[Tagged] = removed) -> None:
            into.append(resource)
            if on_removed is not None:
                on_removed(region, resource)

        errors = release_resources(ec2, plan.resources, stage="sweeping", on_removed=note)
        for resource in removed:
            deployment, machine = resource.tag(TAG_DEPLOYMENT), resource.tag(TAG_MACHINE)
            if resource.kind == "key pair" and deployment and machine:
                for path in key_paths(deployment=deployment, machine=machine):
                    path.unlink(missing_ok=True)
        reports.append(SweepReport(region=plan.region, removed=tuple(removed), errors=tuple(errors)))
    return reports


def _counts(resources: Sequence[Tagged]) -> str:
    kinds = ("instance", "security group", "key pair", "volume")
    parts = [f"{sum(r.kind == kind for r in resources)} {kind}(s)" for kind in kinds]
    spot = sum(r.kind == "spot request" for r in resources)
    return ", ".join(parts + ([f"{spot} spot request(s)"] if spot else []))
