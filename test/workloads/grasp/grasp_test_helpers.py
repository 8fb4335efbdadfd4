"""Hand-built scenes with known geometry for the grasp workload's tests."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fogros_dist.workloads.grasp.geometry import Grasps
from fogros_dist.workloads.grasp.model import GQCNN
from fogros_dist.workloads.grasp.scene import Camera, Scene, SceneObject, ShapeKind

CAMERA_HEIGHT = 0.6
# Straight down: camera x = world x, camera y = -world y, optical axis = -world z.
DOWN = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])


def single_object_scene(
    kind: ShapeKind = "box", size: tuple[float, float, float] = (0.02, 0.04, 0.025)
) -> Scene:
    """One upright object (its local axes = world axes) under a camera looking straight down."""
    obj = SceneObject(kind=kind, size=size, rotation=np.eye(3), center=np.array([0.0, 0.0, size[2]]))
    return Scene(
        camera=Camera(),
        camera_rotation=DOWN.copy(),
        camera_position=np.array([0.0, 0.0, CAMERA_HEIGHT]),
        objects=(obj,),
    )


def one_grasp(*, pixel: tuple[float, float], angle: float, depth: float) -> Grasps:
    """A single grasp in image terms."""
    return Grasps(
        centers=np.array([pixel], dtype=np.float64),
        angles=np.array([angle]),
        depths=np.array([depth]),
        widths=np.zeros(1),
    )


@dataclass(frozen=True)
class TrainedGraspModel:
    """A model trained for the session, saved where the node can load it."""

    model_dir: Path
    path: Path
    model: GQCNN
    metrics: dict[str, float]


@contextlib.contextmanager
def exclusive_domain_id() -> Iterator[int]:
    """A DDS domain id no other test holds, for fixtures wider than one test.

    Uses the lock files of test/conftest.py's ``DomainIds`` (same directory, same range), which
    only offers function-scoped fixtures.
    """
    lock_dir = Path(tempfile.gettempdir()) / "fogros_dist_test_domains"
    lock_dir.mkdir(exist_ok=True)
    for domain in range(119, 29, -1):  # from the top: the per-test fixture starts at random
        fd = os.open(lock_dir / f"{domain}.lock", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield domain
        finally:
            os.close(fd)
        return
    msg = "all test DDS domains 30..119 are in use"
    raise RuntimeError(msg)
