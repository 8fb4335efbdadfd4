"""Which AMI an aws machine gets when it names none (no ``ami``, no ``ami_name``).

A CPU instance type gets Canonical's stock Ubuntu for the ROS distro. An NVIDIA GPU instance type
gets an image with the NVIDIA driver, the first of:

1. the newest image ``fogros-dist image`` recorded (images.json) from a GPU machine with ROS 2 of
   the same distro, in this region;
2. the newest image of this account built by ``cloud_images/`` (Packer tags it
   ``fogros_dist:image=gpu-ros2`` and ``ros_distro``): driver, ROS 2, torch;
3. AWS's public Deep Learning Base AMI (OSS NVIDIA driver) for the distro's Ubuntu release: it
   has no ROS 2, so the machine's user-data installs ROS 2 at first boot
   (:attr:`ImageChoice.install_ros`) and the provider waits for it.

The choice and why are printed in the ``requesting`` progress line.
"""

from __future__ import annotations

from dataclasses import dataclass

from fogros_dist.errors import ProvisionError
from fogros_dist.providers.aws.config import (
    CANONICAL_OWNER,
    DEFAULT_AMI_NAMES,
    DLAMI_NAMES,
    DLAMI_OWNER,
    UBUNTU_RELEASES,
)
from fogros_dist.providers.aws.ec2 import Ec2, ImageInfo, InstanceTypeInfo
from fogros_dist.providers.aws.images import GPU_ROS2, find_gpu_image

__all__ = ["ImageChoice", "default_image", "has_nvidia_gpu"]


@dataclass(frozen=True, kw_only=True)
class ImageChoice:
    """An AMI picked for a machine, why, and what the machine must add to it at first boot."""

    image: ImageInfo
    why: str
    # The ROS 2 distro cloud-init installs at first boot ("" when the image has what it needs).
    install_ros: str = ""


def has_nvidia_gpu(instance_type: InstanceTypeInfo) -> bool:
    """Whether the instance type has NVIDIA GPUs (the images here carry NVIDIA's driver)."""
    return any(model.upper().startswith("NVIDIA") for model, _count, _memory in instance_type.gpus)


def default_image(
    ec2: Ec2, *, instance_type: InstanceTypeInfo, architecture: str, distro: str
) -> ImageChoice:
    """The default AMI for ``instance_type`` (see the module docstring).

    Args:
        ec2: the region's EC2 API.
        instance_type: what the machine runs on.
        architecture: ``x86_64`` or ``arm64``.
        distro: the ROS 2 distro the robot runs (humble, jazzy, kilted).

    Raises:
        ProvisionError: no image fits (the message names where it looked and how to give one).
    """
    release = UBUNTU_RELEASES.get(distro)
    if release is None:
        msg = (
            f"aws machine {ec2.machine!r}, stage requesting: no default image for ROS 2 {distro!r} "
            f"(known: {', '.join(sorted(UBUNTU_RELEASES))}): set ami or ami_name"
        )
        raise ProvisionError(msg)
    if not has_nvidia_gpu(instance_type):
        ubuntu_arch = "amd64" if architecture == "x86_64" else "arm64"
        pattern = DEFAULT_AMI_NAMES[distro].format(arch=ubuntu_arch)
        image = ec2.image_by_name(pattern, owner=CANONICAL_OWNER, architecture=architecture)
        return ImageChoice(image=image, why=f"stock Ubuntu {release} (no GPU)")
    record = find_gpu_image(region=ec2.region, ros_distro=distro)
    if record is not None:
        try:
            recorded: ImageInfo | None = ec2.image_by_id(record.image_id)
        except ProvisionError:
            # Deregistered since: the record is stale, look further.
            recorded = None
        if recorded is not None and recorded.architecture == architecture:
            why = (
                f"GPU image recorded by 'fogros-dist image' from {record.source} "
                f"(NVIDIA driver, ROS 2 {distro})"
            )
            return ImageChoice(image=recorded, why=why)
    built = ec2.newest_image(
        owner="self", architecture=architecture, tags={"fogros_dist:image": GPU_ROS2, "ros_distro": distro}
    )
    if built is not None:
        return ImageChoice(
            image=built, why=f"GPU image built by cloud_images/ (NVIDIA driver, ROS 2 {distro})"
        )
    pattern = DLAMI_NAMES.get(architecture, DLAMI_NAMES["x86_64"]).format(release=release)
    public = ec2.newest_image(pattern, owner=DLAMI_OWNER, architecture=architecture)
    if public is None:
        msg = (
            f"aws machine {ec2.machine!r}, stage requesting: no image with the NVIDIA driver for "
            f"{instance_type.name} in {ec2.region}: none recorded by 'fogros-dist image', none of this "
            f"account tagged fogros_dist:image={GPU_ROS2} ros_distro={distro} (cloud_images/), and no "
            f"{pattern!r} from {DLAMI_OWNER}: build one with cloud_images/, or set ami or ami_name"
        )
        raise ProvisionError(msg)
    return ImageChoice(
        image=public,
        why=f"AWS Deep Learning Base AMI (NVIDIA driver; ROS 2 {distro} installed at first boot)",
        install_ros=distro,
    )
