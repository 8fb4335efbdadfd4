"""The EC2 half of the AWS provider against moto_server: launch, reuse, terminate, and what they leave."""

from __future__ import annotations

import base64
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aws_test_helpers import (
    ROBOT_CIDR,
    TAG_KEYS,
    UBUNTU_AMI,
    Progress,
    context,
    ec2_client,
    machine,
    tagged,
)

from fogros_dist.providers.aws.config import key_paths
from fogros_dist.providers.aws.provider import AWSProvider, AwsRef
from fogros_dist.spec import Host


def _tags(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def _instance(client: Any, instance_id: str) -> dict[str, Any]:
    found: dict[str, Any] = client.describe_instances(InstanceIds=[instance_id])["Reservations"][0][
        "Instances"
    ][0]
    return found


def _host(ref: AwsRef, address: str) -> Host:
    return Host(
        machine=ref.machine,
        provider="aws",
        address=address,
        workdir="/home/ubuntu/fogros_dist",
        resource_id=ref.to_resource_id(),
        bridge_port=7447,
    )


def test_launch_creates_key_pair_security_group_and_tagged_instance(
    aws_env: dict[str, str], tmp_path: Path, deployment: str
) -> None:
    progress = Progress()
    provider = AWSProvider()
    launched = provider.launch(machine(ttl_minutes=120), context(tmp_path, deployment, progress=progress))
    client = ec2_client()

    # Progress: requesting (with the instance type's resources), pending, running.
    assert progress.stages() == ["requesting", "pending", "running"]
    requesting = progress.events[0][1]
    assert "g5.xlarge: 4 vCPU, 16 GiB, 1x NVIDIA A10G (22 GiB)" in requesting
    assert "on-demand in us-west-2" in requesting
    assert UBUNTU_AMI in requesting

    # Key pair: created in EC2 with tags; the private key is on the robot, 0600, in a 0700 dir.
    pem, known_hosts = key_paths(deployment=deployment, machine="gpu")
    assert launched.key_file == pem
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert stat.S_IMODE(pem.parent.stat().st_mode) == 0o700
    assert pem.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    (key_pair,) = client.describe_key_pairs(KeyNames=[f"fogros_dist-{deployment}-gpu"])["KeyPairs"]
    assert set(_tags(key_pair)) >= TAG_KEYS

    # Security group: only SSH and the bridge port, only from the robot's address.
    (group,) = client.describe_security_groups(GroupNames=[f"fogros_dist-{deployment}-gpu"])["SecurityGroups"]
    rules = sorted(
        (p["IpProtocol"], p["FromPort"], p["ToPort"], tuple(r["CidrIp"] for r in p["IpRanges"]))
        for p in group["IpPermissions"]
    )
    assert rules == [("tcp", 22, 22, (ROBOT_CIDR,)), ("tcp", 7447, 7447, (ROBOT_CIDR,))]
    assert all(not p.get("Ipv6Ranges") and not p.get("UserIdGroupPairs") for p in group["IpPermissions"])
    assert set(_tags(group)) >= TAG_KEYS

    # The instance: tagged, on-demand, terminates itself on power-off, root volume deleted with it.
    instance = _instance(client, launched.instance_id)
    tags = _tags(instance)
    assert set(tags) >= TAG_KEYS
    assert tags["fogros_dist:deployment"] == deployment
    assert tags["fogros_dist:machine"] == "gpu"
    assert tags["fogros_dist:ttl"] != "none"
    assert instance["InstanceType"] == "g5.xlarge"
    assert instance["KeyName"] == f"fogros_dist-{deployment}-gpu"
    assert "InstanceLifecycle" not in instance
    assert instance["SecurityGroups"][0]["GroupId"] == group["GroupId"]
    behaviour = client.describe_instance_attribute(
        InstanceId=launched.instance_id, Attribute="instanceInitiatedShutdownBehavior"
    )
    assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    (volume,) = client.describe_volumes(
        Filters=[{"Name": "attachment.instance-id", "Values": [launched.instance_id]}]
    )["Volumes"]
    assert volume["Size"] == 40
    assert set(_tags(volume)) >= TAG_KEYS

    # Host key: generated here, handed over in the user-data, recorded as the known host.
    assert tags["fogros_dist:hostkey"] == launched.host_public_key
    assert known_hosts.read_text() == f"{launched.public_ip} {launched.host_public_key}\n"
    user_data = base64.b64decode(
        client.describe_instance_attribute(InstanceId=launched.instance_id, Attribute="userData")["UserData"][
            "Value"
        ]
    ).decode()
    assert launched.host_public_key in user_data
    assert "ed25519_private" in user_data
    assert "fogros-deadman.timer" in user_data
    # The deployment key's private half never leaves the robot's key file.
    assert pem.read_text().strip() not in user_data
    # Debian's cloud-init accepts the document.
    path = tmp_path / "user-data.yaml"
    path.write_text(user_data)
    result = subprocess.run(
        ["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


def test_second_launch_reuses_the_running_instance(
    aws_env: dict[str, str], tmp_path: Path, deployment: str
) -> None:
    provider = AWSProvider()
    first = provider.launch(machine(), context(tmp_path, deployment))
    progress = Progress()
    second = AWSProvider().launch(machine(), context(tmp_path, deployment, progress=progress))
    assert second.instance_id == first.instance_id
    assert second.reused
    assert second.host_public_key == first.host_public_key
    assert any("reusing instance" in message for _, message in progress.events)
    client = ec2_client()
    mine = [{"Name": "tag:fogros_dist:deployment", "Values": [deployment]}]
    instances = [i for r in client.describe_instances(Filters=mine)["Reservations"] for i in r["Instances"]]
    assert [i["InstanceId"] for i in instances] == [first.instance_id]
    assert len(client.describe_key_pairs(Filters=mine)["KeyPairs"]) == 1


def test_reuse_moves_the_security_group_to_the_robots_new_address(
    aws_env: dict[str, str], tmp_path: Path, deployment: str
) -> None:
    AWSProvider().launch(machine(), context(tmp_path, deployment))
    AWSProvider().launch(machine(robot_cidr="198.51.100.9"), context(tmp_path, deployment))
    (group,) = ec2_client().describe_security_groups(GroupNames=[f"fogros_dist-{deployment}-gpu"])[
        "SecurityGroups"
    ]
    assert {r["CidrIp"] for p in group["IpPermissions"] for r in p["IpRanges"]} == {"198.51.100.9/32"}
    # allowed_cidr opens exactly those networks (and the old rules go).
    AWSProvider().launch(
        machine(allowed_cidr="10.1.0.0/16,192.0.2.10", bridge_port=7500, robot_cidr=None),
        context(tmp_path, deployment),
    )
    (group,) = ec2_client().describe_security_groups(GroupNames=[f"fogros_dist-{deployment}-gpu"])[
        "SecurityGroups"
    ]
    rules = sorted((p["FromPort"], r["CidrIp"]) for p in group["IpPermissions"] for r in p["IpRanges"])
    assert rules == [
        (22, "10.1.0.0/16"),
        (22, "192.0.2.10/32"),
        (7500, "10.1.0.0/16"),
        (7500, "192.0.2.10/32"),
    ]


def test_terminate_removes_everything_it_made(
    aws_env: dict[str, str], tmp_path: Path, deployment: str
) -> None:
    provider = AWSProvider()
    progress = Progress()
    launched = provider.launch(machine(spot=True), context(tmp_path, deployment, progress=progress))
    client = ec2_client()
    assert set(tagged(client, deployment)) >= {"instances", "security_groups", "key_pairs"}
    # A spot instance, asked for as one.
    assert _instance(client, launched.instance_id)["InstanceLifecycle"] == "spot"
    assert "spot in us-west-2" in progress.events[0][1]

    provider.terminate(_host(launched.ref, launched.public_ip))

    assert tagged(client, deployment) == {}
    assert _instance(client, launched.instance_id)["State"]["Name"] == "terminated"
    assert not launched.key_file.exists()
    assert not launched.known_hosts.exists()
    # Idempotent: a second terminate (e.g. `down` after a failed `down`) finds nothing to do.
    provider.terminate(_host(launched.ref, launched.public_ip))


def test_key_pair_without_local_private_key_is_replaced(
    aws_env: dict[str, str], tmp_path: Path, deployment: str
) -> None:
    provider = AWSProvider()
    launched = provider.launch(machine(), context(tmp_path, deployment))
    provider.terminate(_host(launched.ref, launched.public_ip))
    client = ec2_client()
    # A key pair left in EC2 whose private key this robot does not have (another robot, a wiped home).
    client.create_key_pair(KeyName=f"fogros_dist-{deployment}-gpu")
    again = provider.launch(machine(), context(tmp_path, deployment))
    assert again.key_file.exists()
    assert again.instance_id != launched.instance_id


def test_resource_id_round_trip() -> None:
    ref = AwsRef(
        region="eu-west-1",
        instance_id="i-0123456789abcdef0",
        deployment="grasp",
        machine="gpu_1",
        profile="lab",
        endpoint_url="http://127.0.0.1:5000",
    )
    assert AwsRef.from_host(_host(ref, "192.0.2.1")) == ref


def test_resource_id_from_another_provider_is_refused() -> None:
    host = Host(
        machine="gpu", provider="aws", address="x", workdir="/", resource_id="local:1:gpu", bridge_port=1
    )
    with pytest.raises(Exception, match="not an aws machine reference"):
        AwsRef.from_host(host)
