"""Grasp planning: antipodal proposals refined by the cross-entropy method (CEM), scored by a GQ-CNN.

As in Dex-Net 2.0's CEM policy: sample antipodal grasps on the depth image, score them all at once
with the network, keep the best fraction (the elites), fit a Gaussian mixture to the elites, draw a
new population from it, and repeat a few times. A mixture (not one Gaussian) keeps several objects
in play: one Gaussian over elites on two objects would put its mean on the table between them.
Every grasp scored along the way competes for the final ranking, so refinement never makes the
answer worse; near-duplicates are suppressed so the ranking offers distinct grasps.

Grasp angles are pi-periodic, so the mixture models ``(cos 2a, sin 2a)`` instead of ``a``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from fogros_dist.workloads.grasp.geometry import Grasps
from fogros_dist.workloads.grasp.model import GQCNN
from fogros_dist.workloads.grasp.sampling import (
    DepthArray,
    SamplerConfig,
    extract_patches,
    inpaint,
    sample_antipodal,
    with_widths,
)
from fogros_dist.workloads.grasp.scene import Camera

__all__ = ["CemConfig", "GraspPlanner", "PlanResult"]

FloatArray = npt.NDArray[np.float64]

# Feature scales for clustering and the std floors below: pixels, doubled-angle vector, meters.
_SCALE = np.array([8.0, 8.0, 0.5, 0.5, 0.01])
_MIN_STD = np.array([0.75, 0.75, 0.06, 0.06, 0.002])


@dataclass(frozen=True, kw_only=True)
class CemConfig:
    """Cross-entropy-method settings.

    Attributes:
        initial_samples: antipodal proposals per image.
        samples: grasps drawn per refinement iteration.
        iterations: refinement iterations (0: score the proposals only).
        elite_fraction: fraction of each population the next mixture is fit to.
        components: mixture components (at most).
        top_k: grasps returned.
        nms_pixels: returned grasps are at least this far apart (pixels) or differ in angle by
            more than ``nms_angle_deg``.
        nms_angle_deg: see ``nms_pixels``.
    """

    initial_samples: int = 100
    samples: int = 64
    iterations: int = 3
    elite_fraction: float = 0.25
    components: int = 3
    top_k: int = 5
    nms_pixels: float = 4.0
    nms_angle_deg: float = 20.0

    def __post_init__(self) -> None:
        if self.initial_samples < 1 or self.samples < 1 or self.top_k < 1 or self.components < 1:
            msg = (
                f"CEM needs initial_samples ({self.initial_samples}), samples ({self.samples}), "
                f"components ({self.components}) and top_k ({self.top_k}) >= 1"
            )
            raise ValueError(msg)
        if not 0.0 < self.elite_fraction <= 1.0:
            msg = f"CEM elite_fraction {self.elite_fraction} must be in (0, 1]"
            raise ValueError(msg)


@dataclass(frozen=True, kw_only=True, eq=False)
class PlanResult:
    """A plan for one depth image.

    Attributes:
        grasps: the best distinct grasps, best first (at most ``top_k``).
        qualities: (K,) predicted P(robust) of ``grasps``.
        history: mean predicted quality of each population: the proposals, then each CEM
            iteration's samples.
        best_history: the best predicted quality found after the proposals and after each
            iteration.
        seconds: wall time of the whole plan (inpainting, sampling, scoring, refinement).
        scored: how many grasps the network scored.
    """

    grasps: Grasps
    qualities: FloatArray
    history: tuple[float, ...] = ()
    best_history: tuple[float, ...] = ()
    seconds: float = 0.0
    scored: int = 0


class GraspPlanner:
    """Plans grasps on depth images with a trained GQ-CNN.

    Args:
        model: the quality network (its config fixes patch geometry and gripper).
        cem: refinement settings.
        sampler: proposal settings.
        device: where the network runs.
        seed: seeds sampling; each :meth:`plan` call restarts from it, so the same image always
            gets the same plan.
    """

    def __init__(
        self,
        model: GQCNN,
        *,
        cem: CemConfig | None = None,
        sampler: SamplerConfig | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        self.model = model.to(device).eval()
        self.cem = cem or CemConfig()
        self.sampler = sampler or SamplerConfig()
        self.device = torch.device(device)
        self.seed = seed

    def score(self, depth: FloatArray, *, camera: Camera, grasps: Grasps) -> FloatArray:
        """Predicted P(robust) of each grasp, in one batch.

        Args:
            depth: (H, W) inpainted depth in meters.
            camera: its intrinsics.
            grasps: the grasps.
        """
        if len(grasps) == 0:
            return np.zeros(0)
        patches = extract_patches(depth, camera=camera, grasps=grasps, spec=self.model.config.patch)
        q = self.model.quality(
            torch.from_numpy(patches).to(self.device),
            torch.from_numpy(grasps.depths.astype(np.float32)).to(self.device),
        )
        out: FloatArray = q.cpu().numpy().astype(np.float64)
        return out

    def plan(self, depth: DepthArray, *, camera: Camera) -> PlanResult:
        """Plan grasps on one depth image.

        Args:
            depth: (H, W) z-depth in meters; 0 or NaN where the sensor had no return.
            camera: the image's intrinsics.

        Returns:
            The ranked grasps (none if the image offers no antipodal pair).

        Raises:
            ValueError: the image has no valid pixel, or its size disagrees with ``camera``.
        """
        start = time.perf_counter()
        if depth.shape != (camera.height, camera.width):
            msg = (
                f"depth image is {depth.shape[1]}x{depth.shape[0]} but the camera info says "
                f"{camera.width}x{camera.height}: publish matching image and camera info"
            )
            raise ValueError(msg)
        filled = inpaint(depth)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 5]))
        gripper = self.model.config.gripper
        cem = self.cem
        population = sample_antipodal(
            filled, camera=camera, gripper=gripper, config=self.sampler, count=cem.initial_samples, rng=rng
        )
        if len(population) == 0:
            return PlanResult(
                grasps=Grasps.empty(), qualities=np.zeros(0), seconds=time.perf_counter() - start
            )
        qualities = self.score(filled, camera=camera, grasps=population)
        archive_g, archive_q = [population], [qualities]
        history = [float(qualities.mean())]
        best = [float(qualities.max())]
        valid = filled[np.isfinite(filled)]
        depth_range = (float(valid.min()), float(valid.max()))
        for _ in range(cem.iterations):
            n_elite = max(1, math.ceil(cem.elite_fraction * len(population)))
            elite = np.argsort(-qualities, kind="stable")[:n_elite]
            features = _features(population.take(elite))
            means, stds, weights = _fit_mixture(features, components=cem.components)
            population = _draw(
                means, stds, weights, count=cem.samples, rng=rng, camera=camera, depth_range=depth_range
            )
            population = with_widths(filled, camera=camera, gripper=gripper, grasps=population)
            qualities = self.score(filled, camera=camera, grasps=population)
            archive_g.append(population)
            archive_q.append(qualities)
            history.append(float(qualities.mean()))
            best.append(max(best[-1], float(qualities.max())))
        everything = Grasps.concat(archive_g)
        scores = np.concatenate(archive_q)
        keep = _distinct_best(
            everything, scores, top_k=cem.top_k, pixels=cem.nms_pixels, angle_deg=cem.nms_angle_deg
        )
        return PlanResult(
            grasps=everything.take(keep),
            qualities=scores[keep],
            history=tuple(history),
            best_history=tuple(best),
            seconds=time.perf_counter() - start,
            scored=len(everything),
        )


def _features(grasps: Grasps) -> FloatArray:
    two = 2.0 * grasps.angles
    return np.stack(
        [grasps.centers[:, 0], grasps.centers[:, 1], np.cos(two), np.sin(two), grasps.depths], axis=-1
    )


def _fit_mixture(features: FloatArray, *, components: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Diagonal Gaussian mixture by hard-assignment EM, seeded by farthest-point picks.

    ``features`` arrive best first, so the first component starts at the best elite.
    """
    x = features / _SCALE
    k = min(components, x.shape[0])
    centers = [0]
    dist = np.linalg.norm(x - x[0], axis=1)
    for _ in range(1, k):
        nxt = int(np.argmax(dist))
        if dist[nxt] < 1.0:  # the elites are one cluster: more components would split noise
            break
        centers.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(x - x[nxt], axis=1))
    means = x[centers]
    assign = np.zeros(x.shape[0], dtype=int)
    for _ in range(5):
        assign = np.argmin(np.linalg.norm(x[:, None, :] - means[None, :, :], axis=2), axis=1)
        means = np.stack(
            [x[assign == c].mean(axis=0) if (assign == c).any() else means[c] for c in range(len(means))]
        )
    stds = np.stack(
        [
            x[assign == c].std(axis=0) if (assign == c).sum() > 1 else np.zeros(x.shape[1])
            for c in range(len(means))
        ]
    )
    stds = np.maximum(stds * _SCALE, _MIN_STD)
    counts = np.bincount(assign, minlength=len(means)).astype(np.float64)
    weights = counts / counts.sum()
    return means * _SCALE, stds, weights


def _draw(
    means: FloatArray,
    stds: FloatArray,
    weights: FloatArray,
    *,
    count: int,
    rng: np.random.Generator,
    camera: Camera,
    depth_range: tuple[float, float],
) -> Grasps:
    component = rng.choice(len(weights), size=count, p=weights)
    x = means[component] + rng.normal(size=(count, means.shape[1])) * stds[component]
    centers = np.clip(x[:, :2], 0.0, [camera.width - 1.0, camera.height - 1.0])
    angles = np.mod(0.5 * np.arctan2(x[:, 3], x[:, 2]), math.pi)
    depths = np.clip(x[:, 4], *depth_range)
    return Grasps(centers=centers, angles=angles, depths=depths, widths=np.zeros(count))


def _distinct_best(
    grasps: Grasps, scores: FloatArray, *, top_k: int, pixels: float, angle_deg: float
) -> npt.NDArray[np.intp]:
    order = np.argsort(-scores, kind="stable")
    chosen: list[int] = []
    limit = math.radians(angle_deg)
    for index in order:
        close = False
        for other in chosen:
            near = float(np.linalg.norm(grasps.centers[index] - grasps.centers[other])) < pixels
            turn = abs(float(grasps.angles[index] - grasps.angles[other])) % math.pi
            if near and min(turn, math.pi - turn) < limit:
                close = True
                break
        if not close:
            chosen.append(int(index))
            if len(chosen) == top_k:
                break
    return np.asarray(chosen, dtype=np.intp)
