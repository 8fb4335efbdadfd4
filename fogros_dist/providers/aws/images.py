"""AMIs made by `fogros-dist image`, recorded on the robot so a machine's ``ami_name`` finds them.

The record is a small JSON file in the user's config directory (next to the deployment keys):
``{"<name>": {"<region>": {"image_id": ..., "created": ..., "source": "deployment/machine"}}}``.
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

__all__ = ["ImageRecord", "find_image", "images_file", "record_image"]


@dataclass(frozen=True, kw_only=True)
class ImageRecord:
    """One recorded AMI."""

    name: str
    region: str
    image_id: str
    created: str
    source: str


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
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def find_image(name: str, *, region: str) -> ImageRecord | None:
    """The recorded image called ``name`` in ``region``, if any."""
    entry = _load(images_file()).get(name, {}).get(region)
    if not isinstance(entry, dict) or "image_id" not in entry:
        return None
    return ImageRecord(
        name=name,
        region=region,
        image_id=str(entry["image_id"]),
        created=str(entry.get("created", "")),
        source=str(entry.get("source", "")),
    )
