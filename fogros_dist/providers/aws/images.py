"""AMIs made by `fogros-dist image`, recorded on the robot so a machine's ``ami_name`` finds them.

The record is a small JSON file in the user's config directory (next to the deployment keys):
``{"<name>": {"<region>": {"image_id": ..., "created": ..., "source": "deployment/machine",
"kind": ..., "ros_distro": ...}}}``. ``kind`` is ``gpu-ros2`` for an image of a machine whose
probe saw GPUs and ROS 2 (``ros_distro``): such an image becomes the default for GPU instance
types in its region (:func:`find_gpu_image`).
The AMI itself is also named and tagged in the account, so another robot finds it through
``ami_name`` + ``ami_owner = "self"`` too; the record only saves that lookup and says where the
image came from.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from fogros_dist.providers.aws.config import config_dir

__all__ = ["GPU_ROS2", "ImageRecord", "find_gpu_image", "find_image", "images_file", "record_image"]

# The kind of image cloud_images/ builds and `image` records from a GPU machine with ROS 2 (the
# Packer template tags its AMIs fogros_dist:image=gpu-ros2 too).
GPU_ROS2 = "gpu-ros2"


@dataclass(frozen=True, kw_only=True)
class ImageRecord:
    """One recorded AMI."""

    name: str
    region: str
    image_id: str
    created: str
    source: str
    # GPU_ROS2, or "" for any other image; the ROS 2 distro it carries ("" if none).
    kind: str = ""
    ros_distro: str = ""


def images_file() -> Path:
    """Where the records live."""
    return config_dir() / "images.json"


def _load(path: Path) -> dict[str, dict[str, dict[str, str]]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError:
        # A damaged record only loses the shortcut: ami_name still finds the image in AWS.
        return {}
    return data if isinstance(data, dict) else {}


def record_image(record: ImageRecord) -> None:
    """Add (or replace) ``record``; written atomically."""
    path = images_file()
    data = _load(path)
    data.setdefault(record.name, {})[record.region] = {
        "image_id": record.image_id,
        "created": record.created,
        "source": record.source,
        "kind": record.kind,
        "ros_distro": record.ros_distro,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def find_image(name: str, *, region: str) -> ImageRecord | None:
    """The recorded image called ``name`` in ``region``, if any."""
    entry = _load(images_file()).get(name, {}).get(region)
    return _record(name, region, entry)


def find_gpu_image(*, region: str, ros_distro: str) -> ImageRecord | None:
    """The newest recorded GPU_ROS2 image with ROS 2 ``ros_distro`` in ``region``, if any."""
    found = [
        record
        for name, regions in _load(images_file()).items()
        if isinstance(regions, dict)
        and (record := _record(name, region, regions.get(region))) is not None
        and record.kind == GPU_ROS2
        and record.ros_distro == ros_distro
    ]
    return max(found, key=lambda record: (record.created, record.name), default=None)


def _record(name: str, region: str, entry: object) -> ImageRecord | None:
    if not isinstance(entry, dict) or "image_id" not in entry:
        return None
    return ImageRecord(
        name=name,
        region=region,
        image_id=str(entry["image_id"]),
        created=str(entry.get("created", "")),
        source=str(entry.get("source", "")),
        kind=str(entry.get("kind", "")),
        ros_distro=str(entry.get("ros_distro", "")),
    )
