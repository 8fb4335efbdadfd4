"""Helpers for the AWS provider tests: machines, contexts and direct EC2 checks against moto."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fogros_dist.machines import Machine
from fogros_dist.providers.aws.provider import LaunchedInstance
from fogros_dist.providers.base import ProvisionContext
from fogros_dist.spec import Host, MachineSpec, OptionValue

# A moto AMI (Canonical's Ubuntu 16.04 record in moto's catalogue) and the robot's test address.
UBUNTU_AMI = "ami-785db401"
UBUNTU_AMI_NAME = "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-*"
CANONICAL = "099720109477"
ROBOT_CIDR = "203.0.113.7/32"
# The tags every resource a launch creates carries.
TAG_KEYS = {
    "fogros_dist:deployment",
    "fogros_dist:machine",
    "fogros_dist:owner",
    "fogros_dist:created",
    "fogros_dist:ttl",
}


def host_of(launched: LaunchedInstance) -> Host:
    """The Host a deployment records for ``launched`` (what terminate and remaining take)."""
    return Host(
        machine=launched.ref.machine,
        provider="aws",
        address=launched.public_ip,
        workdir="/home/ubuntu/fogros_dist",
        resource_id=launched.ref.to_resource_id(),
        bridge_port=7447,
    )


def machine(name: str = "gpu", **options: Any) -> MachineSpec:
    """An aws machine on the moto endpoint with the test robot's address; ``options`` override."""
    given: dict[str, OptionValue] = {
        "instance_type": "g5.xlarge",
        "region": "us-west-2",
        "ami": UBUNTU_AMI,
        "robot_cidr": ROBOT_CIDR,
    }
    given.update(options)
    given = {k: v for k, v in given.items() if v is not None}
    return Machine(name, provider="aws", **given)


class Progress:
    """Collects (stage, message) progress events."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def __call__(self, stage: str, message: str) -> None:
        self.events.append((stage, message))

    def stages(self) -> list[str]:
        return [stage for stage, _ in self.events]


def context(tmp_path: Path, deployment: str, progress: Progress | None = None) -> ProvisionContext:
    """A ProvisionContext for ``deployment`` with its state under ``tmp_path``."""
    return ProvisionContext(
        deployment=deployment,
        state_dir=tmp_path / "state" / "deployments" / deployment,
        progress=progress or Progress(),
    )


def ec2_client(region: str = "us-west-2") -> Any:
    """A plain boto3 EC2 client on the moto endpoint (from AWS_ENDPOINT_URL), for assertions."""
    import boto3

    return boto3.Session(region_name=region).client("ec2")


def tagged(client: Any, deployment: str = "") -> dict[str, list[str]]:
    """Every fogros_dist-tagged resource (of ``deployment``, or of any) that still exists: kind -> ids."""
    if deployment:
        tag = [{"Name": "tag:fogros_dist:deployment", "Values": [deployment]}]
    else:
        tag = [{"Name": "tag-key", "Values": ["fogros_dist:deployment"]}]
    live = [{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
    instances = [
        i["InstanceId"]
        for r in client.describe_instances(Filters=tag + live)["Reservations"]
        for i in r["Instances"]
    ]
    groups = [g["GroupId"] for g in client.describe_security_groups(Filters=tag)["SecurityGroups"]]
    keys = [k["KeyName"] for k in client.describe_key_pairs(Filters=tag)["KeyPairs"]]
    volumes = [v["VolumeId"] for v in client.describe_volumes(Filters=tag)["Volumes"]]
    found = {"instances": instances, "security_groups": groups, "key_pairs": keys, "volumes": volumes}
    return {kind: ids for kind, ids in found.items() if ids}


def group(client: Any, name: str) -> dict[str, Any] | None:
    """The security group named ``name`` as moto holds it, or None."""
    groups = client.describe_security_groups(Filters=[{"Name": "group-name", "Values": [name]}])[
        "SecurityGroups"
    ]
    assert len(groups) <= 1, groups
    return dict(groups[0]) if groups else None


def instance_groups(client: Any, instance_id: str) -> set[str]:
    """The ids of the security groups ``instance_id`` is in."""
    (instance,) = client.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"]
    return {g["GroupId"] for g in instance["SecurityGroups"]}
