"""The default image of an aws machine on an NVIDIA GPU instance type, against moto_server.

moto's catalogue is extended (conftest: public_amis.json, through moto's MOTO_AMIS_PATH) with AWS's
Deep Learning Base AMIs, so the public fallback is found by its real name and owner. Images of
this account (a cloud_images/ build, an image `fogros-dist image` recorded) are registered in
regions of their own: moto's account is shared by the whole session.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aws_test_helpers import Progress, context, ec2_client, machine

from fogros_dist.errors import ProvisionError
from fogros_dist.providers.aws.images import GPU_ROS2, ImageRecord, find_gpu_image, record_image
from fogros_dist.providers.aws.provider import REF_KEY, AWSProvider, LaunchedInstance
from fogros_dist.remote.agent import Gpu, gpus_to_json
from fogros_dist.remote.machine import ENV_PREFIX
from fogros_dist.spec import Host

DLAMI_NOBLE_NEWEST = "ami-0d1a5b0000000aa02"
DLAMI_JAMMY = "ami-0d1a5b0000000aa03"
DLAMI_NOBLE_ARM = "ami-0d1a5b0000000aa04"
UBUNTU_NOBLE = "ami-0c0a1e0000000bb01"


def _launch(
    tmp_path: Path, deployment: str, monkeypatch: pytest.MonkeyPatch, *, distro: str = "jazzy", **options: Any
) -> tuple[LaunchedInstance, str]:
    monkeypatch.setenv("ROS_DISTRO", distro)
    progress = Progress()
    provider = AWSProvider()
    options.setdefault("ami", None)
    launched = provider.launch(machine(**options), context(tmp_path, deployment, progress))
    return launched, dict(progress.events)["requesting"]


def _cloud_config(launched: LaunchedInstance) -> dict[str, Any]:
    client = ec2_client(launched.ref.region)
    encoded = client.describe_instance_attribute(InstanceId=launched.instance_id, Attribute="userData")
    text = base64.b64decode(encoded["UserData"]["Value"]).decode()
    assert text.startswith("#cloud-config\n")
    parsed: dict[str, Any] = json.loads(text.split("\n", 1)[1])
    return parsed


def _release(launched: LaunchedInstance) -> None:
    AWSProvider().release(launched.ref)


def test_a_gpu_instance_type_gets_the_public_nvidia_image_and_ros_2_at_first_boot(
    aws_env: dict[str, str], tmp_path: Path, deployment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    launched, requesting = _launch(tmp_path, deployment, monkeypatch)
    try:
        # The newest of the Ubuntu 24.04 (Jazzy) DLAMIs, and the choice said why.
        assert (
            f"AMI {DLAMI_NOBLE_NEWEST} (Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 24.04)"
            in requesting
        )
        assert requesting.endswith(
            "default for g5.xlarge: AWS Deep Learning Base AMI "
            "(NVIDIA driver; ROS 2 jazzy installed at first boot)"
        )
        assert launched.install_ros == "jazzy"
        config = _cloud_config(launched)
        # The install runs last, after the dead-man switch is armed.
        assert config["runcmd"][-1] == ["bash", "/var/lib/fogros_dist/install-ros.sh"]
        assert config["runcmd"][-2] == ["systemctl", "enable", "--now", "fogros-deadman.timer"]
        (script,) = [f for f in config["write_files"] if f["path"] == "/var/lib/fogros_dist/install-ros.sh"]
        assert "ros-jazzy-ros-base ros-jazzy-rmw-cyclonedds-cpp" in script["content"]
        assert "touch /var/lib/fogros_dist/ros-ready" in script["content"]
        syntax = subprocess.run(
            ["bash", "-n"], input=script["content"], text=True, capture_output=True, check=False
        )
        assert syntax.returncode == 0, syntax.stderr
        path = tmp_path / "user-data.yaml"
        path.write_text("#cloud-config\n" + json.dumps(config))
        schema = subprocess.run(
            ["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True, check=False
        )
        if schema.returncode != 0 and "not found" not in schema.stderr:
            pytest.fail(f"cloud-init rejects the user-data: {schema.stdout}{schema.stderr}")
    finally:
        _release(launched)


@pytest.mark.parametrize(
    "case", [("g5.xlarge", "humble", DLAMI_JAMMY), ("g5g.xlarge", "jazzy", DLAMI_NOBLE_ARM)]
)
def test_the_public_image_follows_the_distros_ubuntu_and_the_architecture(
    aws_env: dict[str, str],
    tmp_path: Path,
    deployment: str,
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[str, str, str],
) -> None:
    instance_type, distro, image = case
    launched, requesting = _launch(
        tmp_path, deployment, monkeypatch, distro=distro, instance_type=instance_type
    )
    try:
        assert f"AMI {image} " in requesting
        assert launched.install_ros == distro
    finally:
        _release(launched)


def test_a_cpu_instance_type_keeps_stock_ubuntu(
    aws_env: dict[str, str], tmp_path: Path, deployment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    launched, requesting = _launch(tmp_path, deployment, monkeypatch, instance_type="t3.medium")
    try:
        assert f"AMI {UBUNTU_NOBLE} " in requesting
        assert requesting.endswith("default for t3.medium: stock Ubuntu 24.04 (no GPU)")
        assert launched.install_ros == ""
        assert "runcmd" in (config := _cloud_config(launched))
        assert all("install-ros" not in f["path"] for f in config["write_files"])
    finally:
        _release(launched)


def _build(region: str, name: str, tags: dict[str, str]) -> str:
    """An AMI of this account made as Packer makes one: from an instance, tagged."""
    client = ec2_client(region)
    instance = client.run_instances(ImageId="ami-785db401", MinCount=1, MaxCount=1, InstanceType="g5.xlarge")
    instance_id = instance["Instances"][0]["InstanceId"]
    try:
        image_id: str = client.create_image(
            InstanceId=instance_id,
            Name=name,
            TagSpecifications=[
                {"ResourceType": "image", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
            ],
        )["ImageId"]
    finally:
        client.terminate_instances(InstanceIds=[instance_id])
    return image_id


def test_a_cloud_images_build_of_this_account_wins_over_the_public_image(
    aws_env: dict[str, str], tmp_path: Path, deployment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    region = "eu-central-1"
    built = _build(
        region, f"fogros-dist-jazzy-{deployment}", {"fogros_dist:image": GPU_ROS2, "ros_distro": "jazzy"}
    )
    # Built for another distro: not a candidate.
    _build(
        region, f"fogros-dist-humble-{deployment}", {"fogros_dist:image": GPU_ROS2, "ros_distro": "humble"}
    )
    launched, requesting = _launch(tmp_path, deployment, monkeypatch, region=region)
    try:
        assert (
            f"AMI {built} (fogros-dist-jazzy-{deployment}): default for g5.xlarge: GPU image built by "
            in requesting
        )
        assert launched.install_ros == ""
        assert all("install-ros" not in f["path"] for f in _cloud_config(launched)["write_files"])
    finally:
        _release(launched)


def test_an_image_recorded_from_a_gpu_machine_becomes_the_default(
    aws_env: dict[str, str], tmp_path: Path, deployment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    region = "eu-west-3"
    # `fogros-dist image` of a machine whose probe saw a GPU and ROS 2 records it as a GPU image.
    source, _ = _launch(tmp_path, deployment, monkeypatch, region=region, ami="ami-785db401")
    host = Host(
        machine="gpu",
        provider="aws",
        address=source.public_ip,
        workdir="/home/ubuntu/.fogros_dist/deployments/x/gpu",
        resource_id=source.ref.to_resource_id(),
        bridge_port=7447,
        env=(
            (REF_KEY, source.ref.to_resource_id()),
            (
                f"{ENV_PREFIX}GPUS",
                gpus_to_json((Gpu(name="NVIDIA A10G", memory="23028 MiB", driver="550.54.15"),)),
            ),
            (f"{ENV_PREFIX}ROS_SETUP", "/opt/ros/jazzy/setup.bash"),
        ),
    )
    try:
        made = AWSProvider().image(host, name=f"{deployment}-gpu")
        assert (made.kind, made.ros_distro) == (GPU_ROS2, "jazzy")
        assert find_gpu_image(region=region, ros_distro="jazzy") == made
        assert find_gpu_image(region=region, ros_distro="humble") is None
        launched, requesting = _launch(tmp_path, f"{deployment}b", monkeypatch, region=region)
        try:
            assert (
                f"AMI {made.image_id} ({deployment}-gpu): default for g5.xlarge: GPU image recorded by "
                in requesting
            )
            assert launched.install_ros == ""
        finally:
            _release(launched)
    finally:
        _release(source)
    # A record whose image is gone is passed over (here: for the public image).
    record_image(
        ImageRecord(
            name="gone",
            region="us-west-2",
            image_id="ami-0000000000000dead",
            created="2099-01-01T00:00:00+00:00",
            source="x/gpu",
            kind=GPU_ROS2,
            ros_distro="jazzy",
        )
    )
    fallback, requesting = _launch(tmp_path, f"{deployment}c", monkeypatch)
    try:
        assert f"AMI {DLAMI_NOBLE_NEWEST} " in requesting
    finally:
        _release(fallback)


def test_no_gpu_image_anywhere_is_one_line_naming_the_ways_out(
    aws_env: dict[str, str], tmp_path: Path, deployment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(
        ProvisionError, match=r"no default image for ROS 2 'rolling' \(known: humble, jazzy, kilted\)"
    ):
        _launch(tmp_path, deployment, monkeypatch, distro="rolling")
    # A region whose catalogue lacks the public image (removed from moto's copy of it there).
    region = "ap-south-1"
    client = ec2_client(region)
    for image_id in ("ami-0d1a5b0000000aa01", DLAMI_NOBLE_NEWEST):
        client.deregister_image(ImageId=image_id)
    with pytest.raises(ProvisionError) as caught:
        _launch(tmp_path, deployment, monkeypatch, region=region)
    message = str(caught.value)
    assert message.startswith(
        "aws machine 'gpu', stage requesting: no image with the NVIDIA driver for g5.xlarge in ap-south-1: "
    )
    assert "fogros_dist:image=gpu-ros2 ros_distro=jazzy (cloud_images/)" in message
    assert message.endswith("build one with cloud_images/, or set ami or ami_name")
