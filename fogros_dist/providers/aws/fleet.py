"""Everything fogros_dist runs in AWS regions, found by its tags, with or without local state.

`fogros-dist list --region R` shows the instances here that this robot has no record of (another
robot's, or left behind by a crash and a wiped home); `fogros-dist down --all --region R` removes
every tagged resource here (instances, spot requests, security groups, key pairs, loose volumes)
and the local key files of the key pairs it deletes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fogros_dist.providers.aws.config import key_paths
from fogros_dist.providers.aws.ec2 import (
    LIVE_STATES,
    TAG_DEPLOYMENT,
    TAG_MACHINE,
    TAG_OWNER,
    Ec2,
    SweepReport,
)

__all__ = ["CloudMachine", "cloud_machines", "sweep_regions"]


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


def sweep_regions(
    *,
    regions: Sequence[str],
    profile: str = "",
    endpoint_url: str = "",
    on_removed: Callable[[str, str, str], None] | None = None,
) -> list[SweepReport]:
    """Remove every fogros_dist-tagged resource in each of ``regions``.

    Args:
        regions: the regions to sweep.
        profile: the AWS credentials profile ("" for the default chain).
        endpoint_url: the EC2 endpoint ("" for AWS_ENDPOINT_URL or AWS itself).
        on_removed: told (region, kind, name) for each resource removed.

    Returns:
        One report per region; failures are in each report's ``errors``, not raised.
    """
    reports = []
    for region in regions:
        ec2 = Ec2(region=region, profile=profile, endpoint_url=endpoint_url, stage="sweeping")
        key_tags = dict(ec2.tagged_key_pairs())

        def removed(kind: str, name: str, region: str = ec2.region) -> None:
            if on_removed is not None:
                on_removed(region, kind, name)

        report = ec2.sweep(on_removed=removed)
        for name in report.key_pairs:
            tags = key_tags.get(name, {})
            if tags.get(TAG_DEPLOYMENT) and tags.get(TAG_MACHINE):
                for path in key_paths(deployment=tags[TAG_DEPLOYMENT], machine=tags[TAG_MACHINE]):
                    path.unlink(missing_ok=True)
        reports.append(report)
    return reports
