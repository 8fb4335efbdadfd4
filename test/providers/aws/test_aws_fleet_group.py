"""A deployment's fleet security group against moto_server: machines with ``fleet_group`` reach
each other on every port through a group that admits only its own members; it goes with the
deployment's last instance, whether the machines are terminated one after another or in parallel,
reclaimed, or swept by `down --all --region`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from aws_test_helpers import (
    ROBOT_CIDR,
    TAG_KEYS,
    context,
    ec2_client,
    group,
    host_of,
    instance_groups,
    machine,
    tagged,
)

from fogros_dist.errors import ConfigError
from fogros_dist.providers.aws.config import caller_owner, parse_options
from fogros_dist.providers.aws.ec2 import fleet_group_name
from fogros_dist.providers.aws.fleet import plan_sweep, sweep
from fogros_dist.providers.aws.provider import AWSProvider, LaunchedInstance


def _tags(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def _assert_only_itself(group: dict[str, Any]) -> None:
    """The fleet group's inbound rules: exactly one, every protocol from the group itself."""
    (rule,) = group["IpPermissions"]
    assert rule["IpProtocol"] == "-1"
    assert [pair["GroupId"] for pair in rule["UserIdGroupPairs"]] == [group["GroupId"]]
    assert not rule.get("IpRanges")
    assert not rule.get("Ipv6Ranges")
    assert not rule.get("PrefixListIds")


def _launch_pair(tmp_path: Path, deployment: str, region: str = "us-west-2") -> list[LaunchedInstance]:
    provider = AWSProvider()
    return [
        provider.launch(
            machine(name=name, instance_type="t3.micro", fleet_group=True, region=region),
            context(tmp_path, deployment),
        )
        for name in ("head", "worker")
    ]


def test_two_machines_share_one_fleet_group_that_admits_only_itself(
    aws_env: dict[str, str], tmp_path: Path, deployment: str
) -> None:
    client = ec2_client()
    head, worker = _launch_pair(tmp_path, deployment)

    fleet = group(client, fleet_group_name(deployment))
    assert fleet is not None
    _assert_only_itself(fleet)
    tags = _tags(fleet)
    assert set(tags) >= TAG_KEYS
    assert tags["fogros_dist:deployment"] == deployment
    assert tags["fogros_dist:machine"] == "_fleet"
    assert tags["fogros_dist:owner"] == caller_owner()
    assert tags["Name"] == f"fogros_dist-{deployment}-_fleet"
    # Exactly one: found by the deployment's tag too, besides the two machines' own groups.
    by_tag = client.describe_security_groups(
        Filters=[{"Name": "tag:fogros_dist:deployment", "Values": [deployment]}]
    )["SecurityGroups"]
    assert sorted(g["GroupName"] for g in by_tag) == sorted(
        f"fogros_dist-{deployment}-{name}" for name in ("_fleet", "head", "worker")
    )

    for launched in (head, worker):
        own = group(client, f"fogros_dist-{deployment}-{launched.ref.machine}")
        assert own is not None
        # The machine's own group is unchanged: SSH and the bridge port from the robot only.
        rules = sorted(
            (p["IpProtocol"], p["FromPort"], p["ToPort"], tuple(r["CidrIp"] for r in p["IpRanges"]))
            for p in own["IpPermissions"]
        )
        assert rules == [("tcp", 22, 22, (ROBOT_CIDR,)), ("tcp", 7447, 7447, (ROBOT_CIDR,))]
        assert all(not p.get("UserIdGroupPairs") for p in own["IpPermissions"])
        assert instance_groups(client, launched.instance_id) == {own["GroupId"], fleet["GroupId"]}

    # One after another (as teardown does): the first leaves it to the second, and says nothing
    # is left of itself; the second, the deployment's last instance, deletes it.
    provider = AWSProvider()
    provider.terminate(host_of(head))
    assert group(client, fleet_group_name(deployment)) is not None
    assert provider.remaining(host_of(head)) == ()
    provider.terminate(host_of(worker))
    assert group(client, fleet_group_name(deployment)) is None
    assert provider.remaining(host_of(worker)) == ()
    assert tagged(client, deployment) == {}


def test_machines_terminated_in_parallel_leave_no_fleet_group(
    aws_env: dict[str, str], tmp_path: Path, deployment: str
) -> None:
    client = ec2_client()
    launched = _launch_pair(tmp_path, deployment)
    provider = AWSProvider()
    failures: list[BaseException] = []
    start = threading.Barrier(len(launched))

    def terminate(one: LaunchedInstance) -> None:
        try:
            start.wait(timeout=10)
            provider.terminate(host_of(one))
        except BaseException as err:  # reported by the test thread
            failures.append(err)

    threads = [threading.Thread(target=terminate, args=(one,)) for one in launched]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    assert group(client, fleet_group_name(deployment)) is None
    assert [provider.remaining(host_of(one)) for one in launched] == [(), ()]
    assert tagged(client, deployment) == {}


def test_a_machine_without_fleet_group_gets_none(
    aws_env: dict[str, str], tmp_path: Path, deployment: str
) -> None:
    client = ec2_client()
    provider = AWSProvider()
    launched = provider.launch(machine(instance_type="t3.micro"), context(tmp_path, deployment))
    assert group(client, fleet_group_name(deployment)) is None
    own = group(client, f"fogros_dist-{deployment}-gpu")
    assert own is not None
    assert instance_groups(client, launched.instance_id) == {own["GroupId"]}
    provider.terminate(host_of(launched))
    assert tagged(client, deployment) == {}


def test_a_stray_rule_in_the_fleet_group_is_revoked(
    aws_env: dict[str, str], tmp_path: Path, deployment: str
) -> None:
    client = ec2_client()
    vpc = client.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    owner_tags = [
        {"Key": "fogros_dist:deployment", "Value": deployment},
        {"Key": "fogros_dist:machine", "Value": "_fleet"},
        {"Key": "fogros_dist:owner", "Value": caller_owner()},
    ]
    group_id = client.create_security_group(
        GroupName=fleet_group_name(deployment),
        Description="left from an earlier up, edited by hand",
        VpcId=vpc,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": owner_tags}],
    )["GroupId"]
    # Someone opened it to the internet, to a network on every protocol, and to itself on SSH only.
    client.authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 0, "ToPort": 65535, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
            {
                "IpProtocol": "-1",
                "IpRanges": [{"CidrIp": "10.0.0.0/8"}],
                "Ipv6Ranges": [{"CidrIpv6": "::/0"}],
            },
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "UserIdGroupPairs": [{"GroupId": group_id}]},
        ],
    )
    provider = AWSProvider()
    launched = provider.launch(
        machine(instance_type="t3.micro", fleet_group=True), context(tmp_path, deployment)
    )
    fleet = group(client, fleet_group_name(deployment))
    assert fleet is not None
    assert fleet["GroupId"] == group_id  # reconciled, not replaced
    _assert_only_itself(fleet)
    assert group_id in instance_groups(client, launched.instance_id)
    provider.terminate(host_of(launched))
    assert tagged(client, deployment) == {}


def test_a_reused_instance_joins_the_fleet_group(
    aws_env: dict[str, str], tmp_path: Path, deployment: str
) -> None:
    client = ec2_client()
    provider = AWSProvider()
    first = provider.launch(machine(instance_type="t3.micro"), context(tmp_path, deployment))
    # The same machine, now with fleet_group: its running instance is reused and joins the group.
    second = provider.launch(
        machine(instance_type="t3.micro", fleet_group=True), context(tmp_path, deployment)
    )
    assert second.reused
    assert second.instance_id == first.instance_id
    fleet = group(client, fleet_group_name(deployment))
    own = group(client, f"fogros_dist-{deployment}-gpu")
    assert fleet is not None
    assert own is not None
    assert instance_groups(client, first.instance_id) == {own["GroupId"], fleet["GroupId"]}
    provider.terminate(host_of(second))
    assert tagged(client, deployment) == {}


def test_the_fleet_group_is_left_over_until_deleted(
    aws_env: dict[str, str], tmp_path: Path, deployment: str
) -> None:
    client = ec2_client()
    provider = AWSProvider()
    launched = provider.launch(
        machine(instance_type="t3.micro", fleet_group=True), context(tmp_path, deployment)
    )
    host = host_of(launched)
    before = provider.remaining(host)
    assert any(f"(fogros_dist-{deployment}-_fleet)" in line for line in before)
    provider.terminate(host)
    assert provider.remaining(host) == ()

    # One that reappears (a delete that failed, or made by hand) is named, and the next down takes it.
    vpc = client.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    group_id = client.create_security_group(
        GroupName=fleet_group_name(deployment), Description="again", VpcId=vpc
    )["GroupId"]
    assert provider.remaining(host) == (
        f"security group {group_id} (fogros_dist-{deployment}-_fleet) in us-west-2",
    )
    provider.terminate(host)
    assert provider.remaining(host) == ()
    assert group(client, fleet_group_name(deployment)) is None


def test_reclaim_leaves_the_fleet_group_to_the_last_machine(
    aws_env: dict[str, str], tmp_path: Path, deployment: str
) -> None:
    client = ec2_client()
    _launch_pair(tmp_path, deployment)  # both creates interrupted: no Host recorded
    provider = AWSProvider()
    spec = {
        name: machine(name=name, instance_type="t3.micro", fleet_group=True) for name in ("head", "worker")
    }
    assert provider.reclaim(spec["head"], deployment=deployment) == ()
    assert group(client, fleet_group_name(deployment)) is not None  # the worker still holds it
    assert provider.reclaim(spec["worker"], deployment=deployment) == ()
    assert tagged(client, deployment) == {}


def test_down_all_region_sweeps_the_fleet_group(
    aws_env: dict[str, str], tmp_path: Path, deployment: str
) -> None:
    region = "ap-northeast-3"  # a region of its own: the sweep removes every tagged resource there
    client = ec2_client(region)
    _launch_pair(tmp_path, deployment, region=region)
    (plan,) = plan_sweep(regions=[region])
    listing = "\n".join(plan.lines())
    assert f"(fogros_dist-{deployment}-_fleet): deployment {deployment}, machine _fleet" in listing
    assert "2 instance(s), 3 security group(s), 2 key pair(s)" in listing
    (report,) = sweep([plan])
    assert report.errors == ()
    assert tagged(client) == {}


@pytest.mark.parametrize("value", ["yes", 1])
def test_a_bad_fleet_group_value_is_one_line(value: object) -> None:
    spec = machine(fleet_group=value)
    with pytest.raises(ConfigError) as err:
        AWSProvider().validate(spec)
    assert str(err.value) == f"machine 'gpu': option fleet_group must be true or false, got {value!r}"
    assert parse_options(machine(fleet_group="true")).fleet_group is True
    assert parse_options(machine()).fleet_group is False
