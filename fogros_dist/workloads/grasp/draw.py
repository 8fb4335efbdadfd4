"""Draw grasps on a depth image (PNG), for the demo and for looking at what the planner does."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from fogros_dist.workloads.grasp.geometry import Grasps, Gripper
from fogros_dist.workloads.grasp.sampling import DepthArray
from fogros_dist.workloads.grasp.scene import Camera

if TYPE_CHECKING:
    from PIL.Image import Image as PilImage

__all__ = ["Panel", "draw_grasps", "draw_panels"]


@dataclass(frozen=True, kw_only=True, eq=False)
class Panel:
    """One depth image with grasps to draw on it.

    Attributes:
        depth: (H, W) depth in meters (0 or NaN where missing).
        camera: its intrinsics (turns the gripper opening into pixels).
        grasps: the grasps, best first.
        qualities: (N,) in ``[0, 1]``: colors each grasp from red (0) to green (1).
        robust: (N,) optional ground truth; robust grasps get a white outline.
        title: a caption drawn in the corner.
    """

    depth: DepthArray
    camera: Camera
    grasps: Grasps
    qualities: npt.NDArray[np.float64]
    robust: npt.NDArray[np.bool_] | None = None
    title: str = ""


def draw_grasps(
    *,
    depth: DepthArray,
    camera: Camera,
    grasps: Grasps,
    qualities: npt.NDArray[np.float64],
    gripper: Gripper | None = None,
    path: Path | None = None,
    scale: int = 4,
) -> bytes:
    """A PNG of the depth image (near is bright) with each grasp as its open jaws.

    Args:
        depth: (H, W) depth in meters.
        camera: its intrinsics.
        grasps: the grasps, best first (the first is drawn thickest).
        qualities: (N,) predicted qualities.
        gripper: the gripper (its opening sets the drawn jaw width; default :class:`Gripper`).
        path: also write the PNG there.
        scale: upscaling factor (small depth images are hard to see).

    Returns:
        The PNG bytes.
    """
    panel = Panel(depth=depth, camera=camera, grasps=grasps, qualities=qualities)
    return draw_panels([panel], gripper=gripper, path=path, scale=scale, columns=1)


def draw_panels(
    panels: Sequence[Panel],
    *,
    gripper: Gripper | None = None,
    path: Path | None = None,
    scale: int = 4,
    columns: int = 3,
) -> bytes:
    """A PNG grid of panels (see :func:`draw_grasps`).

    Raises:
        ValueError: ``panels`` is empty.
    """
    from PIL import Image

    if not panels:
        msg = "draw_panels needs at least one panel"
        raise ValueError(msg)
    gripper = gripper or Gripper()
    tiles = [_tile(p, gripper=gripper, scale=scale) for p in panels]
    columns = max(1, min(columns, len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    tile_w = max(t.width for t in tiles)
    tile_h = max(t.height for t in tiles)
    gap = 4
    sheet = Image.new(
        "RGB", (columns * tile_w + (columns - 1) * gap, rows * tile_h + (rows - 1) * gap), "black"
    )
    for index, tile in enumerate(tiles):
        sheet.paste(tile, ((index % columns) * (tile_w + gap), (index // columns) * (tile_h + gap)))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    data = buffer.getvalue()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return data


def _tile(panel: Panel, *, gripper: Gripper, scale: int) -> PilImage:
    from PIL import Image, ImageDraw

    depth = np.asarray(panel.depth, dtype=np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    gray = np.zeros(depth.shape, dtype=np.uint8)
    if valid.any():
        near, far = float(depth[valid].min()), float(np.percentile(depth[valid], 99))
        span = max(far - near, 1e-6)
        # Near is bright: objects stand out from the table.
        gray = np.where(valid, 40 + 215 * np.clip((far - depth) / span, 0.0, 1.0), 0).astype(np.uint8)
    image = Image.fromarray(gray).convert("RGB")
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(image)
    grasps = panel.grasps
    focal = 0.5 * (panel.camera.fx + panel.camera.fy)
    # Draw the best last so it ends up on top.
    for index in reversed(range(len(grasps))):
        quality = float(np.clip(panel.qualities[index], 0.0, 1.0))
        color = (int(255 * (1 - quality)), int(255 * quality), 40)
        u, v = grasps.centers[index] * scale + (scale - 1) / 2.0
        angle = float(grasps.angles[index])
        half = gripper.max_width / 2.0 * focal / float(grasps.depths[index]) * scale
        finger = gripper.finger_width * focal / float(grasps.depths[index]) * scale
        ax, ay = math.cos(angle), math.sin(angle)
        px, py = -ay, ax
        p1 = (u - half * ax, v - half * ay)
        p2 = (u + half * ax, v + half * ay)
        width = 3 if index == 0 else 1
        if panel.robust is not None and bool(panel.robust[index]):
            draw.line([p1, p2], fill=(255, 255, 255), width=width + 2)
        draw.line([p1, p2], fill=color, width=width)
        for jx, jy in (p1, p2):
            draw.line(
                [(jx - finger * px, jy - finger * py), (jx + finger * px, jy + finger * py)],
                fill=color,
                width=width + 1,
            )
        draw.ellipse([u - 2, v - 2, u + 2, v + 2], fill=color)
    if panel.title:
        draw.text((4, 4), panel.title, fill=(255, 255, 0))
    return image
