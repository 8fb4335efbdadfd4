"""What an interrupted `up` leaves in EC2, found by its tags and released: ``reclaim``,
``remaining``, tagging at creation, the idempotency token and cancellable waits, against moto_server.

An interrupted create is played by running the provider's EC2 half (``launch``) and dropping what
it returns, as a SIGKILL after RunInstances and before the Host is recorded does.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from aws_test_helpers import UBUNTU_AMI, Progress, context, ec2_client, host_of, machine, tagged

from fogros_dist.errors import Cancelled
from fogros_dist.providers.aws.config import caller_owner, key_paths
from fogros_dist.providers.aws.ec2 import client_token
from fogros_dist.providers.aws.provider import AWSProvider
from fogros_dist.remote.runner import RetryPolicy

# Generous bound on how long a cancelled wait may take to raise (the waits check every second).
CANCEL_BOUND_S = 2.5
# ... and how long a cancelled create may take to have released its instance on moto (about 1 s).
CREATE_CANCEL_BOUND_S = 10.0


def _tag_list(deployment: str, machine_name: str, owner: str) -> list[dict[str, str]]:
    return [
        {"Key": "fogros_dist:deployment", "Value": deployment},
        {"Key": "fogros_dist:machine", "Value": machine_name},
        {"Key": "fogros_dist:owner", "Value": owner},
    ]


def _closed_port() -> int:
    """A loopback port nothing listens on (connections are refused: sshd not up yet)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_reclaim_releases_what_an_interrupted_create_left(
    aws_env: dict[str, str], tmp_path: Path, deployment: str
) -> None:
    spec = machine(instance_type="t3.micro")
    client = ec2_client()
    launched = AWSProvider().launch(spec, context(tmp_path, deployment))
    left_behind = tagged(client, deployment)
    assert set(left_behind) == {"instances", "security_groups", "key_pairs", "volumes"}
    assert launched.key_file.exists()
    assert launched.known_hosts.exists()

    # A fresh provider (another process after the SIGKILL): nothing in memory, only the tags.
    assert AWSProvider().reclaim(spec, deployment=deployment) == ()
    assert tagged(client, deployment) == {}
    assert not launched.key_file.exists()
    assert not launched.known_hosts.exists()
    (instance,) = [
        i
        for r in client.describe_instances(InstanceIds=left_behind["instances"])["Reservations"]
        for i in r["Instances"]
    ]
    assert instance["State"]["Name"] == "terminated"
    # Idempotent: a second reclaim finds nothing and changes nothing.
    assert AWSProvider().reclaim(spec, deployment=deployment) == ()


def test_reclaim_takes_spot_requests_loose_volumes_and_half_written_keys(
    aws_env: dict[str, str], tmp_path: Path, deployment: str
) -> None:
    spec = machine(name="cpu", instance_type="t3.micro")
    client = ec2_client()
    tags = _tag_list(deployment, "cpu", caller_owner())
    request = client.request_spot_instances(
        LaunchSpecification={"ImageId": UBUNTU_AMI, "InstanceType": "t3.micro"},
        # As RunInstances tags a spot request and its instance (moto fulfils the request at once).
        TagSpecifications=[
            {"ResourceType": "spot-instances-request", "Tags": tags},
            {"ResourceType": "instance", "Tags": tags},
        ],
    )["SpotInstanceRequests"][0]["SpotInstanceRequestId"]
    volume = client.create_volume(
        AvailabilityZone="us-west-2a", Size=8, TagSpecifications=[{"ResourceType": "volume", "Tags": tags}]
    )["VolumeId"]
    key_file, _ = key_paths(deployment=deployment, machine="cpu")
    key_file.parent.mkdir(parents=True, exist_ok=True)
    partial = key_file.with_suffix(".tmp4242")  # a key write killed half-way
    partial.write_text("-----BEGIN")

    assert AWSProvider().reclaim(spec, deployment=deployment) == ()
    # Cancelled (moto forgets a cancelled request; AWS lists it as cancelled), its instance ended.
    requests = client.describe_spot_instance_requests(
        Filters=[{"Name": "spot-instance-request-id", "Values": [request]}]
    )["SpotInstanceRequests"]
    assert all(r["State"] == "cancelled" for r in requests)
    assert "instances" not in tagged(client, deployment)
    assert not client.describe_volumes(Filters=[{"Name": "volume-id", "Values": [volume]}])["Volumes"]
    assert not partial.exists()


def test_reclaim_leaves_another_owners_resources_alone(
    aws_env: dict[str, str], tmp_path: Path, deployment: str
) -> None:
    spec = machine(name="arm", instance_type="t3.micro")
    client = ec2_client()
    theirs = client.create_volume(
        AvailabilityZone="us-west-2a",
        Size=8,
        TagSpecifications=[{"ResourceType": "volume", "Tags": _tag_list(deployment, "arm", "bob@elsewhere")}],
    )["VolumeId"]
    try:
        assert AWSProvider().reclaim(spec, deployment=deployment) == ()
        (volume,) = client.describe_volumes(VolumeIds=[theirs])["Volumes"]
        assert volume["State"] == "available"
    finally:
        client.delete_volume(VolumeId=theirs)


def test_remaining_checks_ec2_itself(aws_env: dict[str, str], tmp_path: Path, deployment: str) -> None:
    provider = AWSProvider()
    launched = provider.launch(machine(instance_type="t3.micro"), context(tmp_path, deployment))
    host = host_of(launched)
    before = provider.remaining(host)
    assert f"instance {launched.instance_id} (t3.micro, running) in us-west-2" in before
    assert f"key file {launched.key_file}" in before
    assert f"key file {launched.known_hosts}" in before
    assert any(line.startswith("security group sg-") for line in before)
    assert any(line.startswith("key pair fogros_dist-") for line in before)
    assert any(line.startswith("volume vol-") for line in before)

    provider.terminate(host)
    assert provider.remaining(host) == ()

    # Something of it that reappears (made by hand, or a terminate that failed half-way) is named.
    client = ec2_client()
    name = f"fogros_dist-{deployment}-gpu"
    client.create_key_pair(
        KeyName=name,
        TagSpecifications=[
            {"ResourceType": "key-pair", "Tags": _tag_list(deployment, "gpu", caller_owner())}
        ],
    )
    try:
        assert provider.remaining(host) == (f"key pair {name} in us-west-2",)
    finally:
        client.delete_key_pair(KeyName=name)


def test_every_resource_is_tagged_by_the_request_that_creates_it(
    aws_env: dict[str, str], tmp_path: Path, deployment: str
) -> None:
    region = "eu-north-1"  # a region of its own: everything fogros_dist made there is this launch's
    client = ec2_client(region)
    launched = AWSProvider().launch(
        machine(region=region, instance_type="t3.micro"), context(tmp_path, deployment)
    )
    try:
        want = {
            "fogros_dist:deployment": deployment,
            "fogros_dist:machine": "gpu",
            "fogros_dist:owner": caller_owner(),
        }

        def tags(resource: dict[str, Any]) -> dict[str, str]:
            return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}

        groups = [
            g for g in client.describe_security_groups()["SecurityGroups"] if g["GroupName"] != "default"
        ]
        resources = [
            *groups,
            *client.describe_key_pairs()["KeyPairs"],
            *(i for r in client.describe_instances()["Reservations"] for i in r["Instances"]),
            *client.describe_volumes()["Volumes"],
        ]
        assert len(resources) >= 4
        for resource in resources:
            assert want.items() <= tags(resource).items(), resource
    finally:
        AWSProvider().release(launched.ref)


def test_run_instances_carries_the_records_idempotency_token(
    aws_env: dict[str, str], tmp_path: Path, deployment: str
) -> None:
    created_at = 1_700_000_000.25
    ctx = dataclasses.replace(context(tmp_path, deployment), created_at=created_at)
    launched = AWSProvider().launch(machine(instance_type="t3.micro"), ctx)
    try:
        (instance,) = [
            i
            for r in ec2_client().describe_instances(InstanceIds=[launched.instance_id])["Reservations"]
            for i in r["Instances"]
        ]
        token = client_token(deployment=deployment, machine="gpu", created_at=created_at)
        assert instance["ClientToken"] == token
    finally:
        AWSProvider().release(launched.ref)
    # Stable for one record, new for the next record of the same name, at most 64 characters.
    assert client_token(deployment=deployment, machine="gpu", created_at=created_at) == token
    assert client_token(deployment=deployment, machine="gpu", created_at=created_at + 1) != token
    assert client_token(deployment=deployment, machine="cpu", created_at=created_at) != token
    assert len(token) <= 64
    # Unknown creation time: a fresh token each time, so no old (terminated) instance comes back.
    assert client_token(deployment=deployment, machine="gpu", created_at=0) != client_token(
        deployment=deployment, machine="gpu", created_at=0
    )


def test_cancel_during_the_sshd_wait_stops_create_at_once_and_releases(
    aws_env: dict[str, str], tmp_path: Path, deployment: str
) -> None:
    port = _closed_port()
    provider = AWSProvider(
        ssh_endpoint=lambda _address: ("127.0.0.1", port),
        retry=RetryPolicy(attempts=2, first_delay_s=0.1, max_delay_s=0.1, timeout_s=1.0),
    )
    progress = Progress()
    ctx = context(tmp_path, deployment, progress)
    outcome: list[BaseException] = []

    def create() -> None:
        try:
            provider.create(machine(instance_type="t3.micro"), ctx)
        except BaseException as err:
            outcome.append(err)

    worker = threading.Thread(target=create)
    worker.start()
    deadline = time.monotonic() + 60
    while not any(stage == "waiting" and "sshd" in text for stage, text in progress.events):
        assert worker.is_alive(), (outcome, progress.events)
        assert time.monotonic() < deadline, progress.events
        time.sleep(0.05)
    waiting = next(text for stage, text in progress.events if stage == "waiting")
    assert f"at 127.0.0.1:{port} (attempt " in waiting
    assert " s; " in waiting  # elapsed seconds, then what the last attempt saw
    assert tagged(ec2_client(), deployment).get("instances")

    ctx.cancel.set()
    cancelled_at = time.monotonic()
    worker.join(timeout=60)
    # Within the bound: the wait notices within a second, then create() releases what it launched
    # (terminating on moto takes well under a second; on AWS it is the teardown that follows).
    assert time.monotonic() - cancelled_at < CREATE_CANCEL_BOUND_S
    (error,) = outcome
    assert isinstance(error, Cancelled)
    assert str(error).startswith("aws machine 'gpu': stopped on request while waiting for sshd of instance")
    assert tagged(ec2_client(), deployment) == {}
    assert not key_paths(deployment=deployment, machine="gpu")[0].exists()


def test_a_cancelled_wait_raises_within_a_second(aws_env: dict[str, str]) -> None:
    from fogros_dist.providers.aws.waits import Wait

    cancel = threading.Event()
    seen: list[str] = []
    wait = Wait(
        machine="gpu",
        what="something that never happens",
        timeout_s=600,
        cancel=cancel,
        progress=lambda _stage, text: seen.append(text),
    )
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()

    def wait_forever() -> None:
        for _ in wait.attempts():
            wait.status("not yet")

    with pytest.raises(
        Cancelled, match=r"^aws machine 'gpu': stopped on request while waiting for something"
    ):
        wait_forever()
    assert time.monotonic() - started < CANCEL_BOUND_S
    assert seen
    assert seen[0].startswith("something that never happens (attempt 2, 0 s; not yet)")
