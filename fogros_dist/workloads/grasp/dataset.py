"""The grasp dataset: (depth patch, grasp depth, robust label) from generated scenes.

Scene ``i`` of split ``s`` for seed ``k`` is always the same scene, so a training run, its
held-out evaluation and a later distributed run over shards all agree on the data without
storing it. Samples are antipodal grasps (the planner's proposals) plus jittered copies of them
(the planner's refinement step explores around proposals, so the network must score near misses).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch

from fogros_dist.workloads.grasp.geometry import Grasps, Gripper
from fogros_dist.workloads.grasp.labels import LabelConfig, robust_quality
from fogros_dist.workloads.grasp.sampling import (
    PatchSpec,
    SamplerConfig,
    extract_patches,
    inpaint,
    sample_antipodal,
    with_widths,
)
from fogros_dist.workloads.grasp.scene import (
    Camera,
    NoiseModel,
    Scene,
    SceneConfig,
    generate_scene,
    render_depth,
)

__all__ = [
    "TEST_SPLIT",
    "TRAIN_SPLIT",
    "DatasetConfig",
    "GraspDataset",
    "GraspSamples",
    "generate_samples",
    "scene_seed",
    "split_scenes",
]

TRAIN_SPLIT = 0
TEST_SPLIT = 1


@dataclass(frozen=True, kw_only=True)
class DatasetConfig:
    """What data to generate.

    Attributes:
        scenes: number of scenes.
        grasps_per_scene: antipodal grasps sampled per scene (at most).
        jitter_per_grasp: jittered copies added per antipodal grasp (0 for none).
        seed: the data seed.
        split: which scene stream (:data:`TRAIN_SPLIT`, :data:`TEST_SPLIT`): different splits
            never share a scene.
        first_scene: index of the first scene (to cut a stream into shards).
    """

    scenes: int = 400
    grasps_per_scene: int = 48
    jitter_per_grasp: int = 1
    seed: int = 0
    split: int = TRAIN_SPLIT
    first_scene: int = 0
    camera: Camera = field(default_factory=Camera)
    scene: SceneConfig = field(default_factory=SceneConfig)
    noise: NoiseModel = field(default_factory=NoiseModel)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    gripper: Gripper = field(default_factory=Gripper)
    patch: PatchSpec = field(default_factory=PatchSpec)
    jitter_pixels: float = 2.0
    jitter_angle_deg: float = 12.0
    jitter_depth: float = 0.008


@dataclass(frozen=True, kw_only=True, eq=False)
class GraspSamples:
    """Labeled grasp samples (one row each).

    Attributes:
        patches: (N, S, S) float32 depth relative to the grasp depth (meters).
        depths: (N,) float32 grasp depths (meters).
        labels: (N,) bool, robust or not.
        qualities: (N,) float32 robust quality (fraction of perturbed grasps that hold).
        scenes: (N,) int64 index of the scene each sample comes from.
    """

    patches: npt.NDArray[np.float32]
    depths: npt.NDArray[np.float32]
    labels: npt.NDArray[np.bool_]
    qualities: npt.NDArray[np.float32]
    scenes: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @classmethod
    def concat(cls, parts: Sequence[GraspSamples], *, patch_size: int) -> GraspSamples:
        """All samples of ``parts``, in order."""
        if not parts:
            return cls(
                patches=np.zeros((0, patch_size, patch_size), np.float32),
                depths=np.zeros(0, np.float32),
                labels=np.zeros(0, bool),
                qualities=np.zeros(0, np.float32),
                scenes=np.zeros(0, np.int64),
            )
        return cls(
            patches=np.concatenate([p.patches for p in parts]),
            depths=np.concatenate([p.depths for p in parts]),
            labels=np.concatenate([p.labels for p in parts]),
            qualities=np.concatenate([p.qualities for p in parts]),
            scenes=np.concatenate([p.scenes for p in parts]),
        )


def scene_seed(*, seed: int, split: int, index: int) -> int:
    """The scene seed of scene ``index`` in ``split`` of data seed ``seed`` (stable across runs)."""
    return int(np.random.SeedSequence([seed, split, index]).generate_state(1)[0])


def split_scenes(config: DatasetConfig) -> list[Scene]:
    """The scenes ``config`` describes, in order."""
    return [
        generate_scene(
            seed=scene_seed(seed=config.seed, split=config.split, index=index),
            camera=config.camera,
            config=config.scene,
        )
        for index in range(config.first_scene, config.first_scene + config.scenes)
    ]


def generate_samples(config: DatasetConfig, *, report: Callable[[str], None] | None = None) -> GraspSamples:
    """Render, sample, label and cut patches for every scene of ``config``.

    Args:
        config: what to generate.
        report: progress lines (about ten per call).

    Returns:
        The samples, scene by scene.
    """
    parts: list[GraspSamples] = []
    every = max(1, config.scenes // 10)
    for offset, scene in enumerate(split_scenes(config)):
        index = config.first_scene + offset
        parts.append(_scene_samples(scene, index=index, config=config))
        if report is not None and (offset + 1) % every == 0:
            total = sum(len(p) for p in parts)
            report(f"data: {offset + 1}/{config.scenes} scenes, {total} grasps")
    return GraspSamples.concat(parts, patch_size=config.patch.size)


def _scene_samples(scene: Scene, *, index: int, config: DatasetConfig) -> GraspSamples:
    rng = np.random.default_rng(np.random.SeedSequence([scene.seed, 3]))
    image = render_depth(scene, noise=config.noise, seed=scene.seed)
    depth = inpaint(image.depth)
    grasps = sample_antipodal(
        depth,
        camera=scene.camera,
        gripper=config.gripper,
        config=config.sampler,
        count=config.grasps_per_scene,
        rng=rng,
    )
    if len(grasps) and config.jitter_per_grasp > 0:
        grasps = Grasps.concat([grasps, _jittered(grasps, depth=depth, config=config, rng=rng)])
    qualities = robust_quality(scene, grasps, gripper=config.gripper, config=config.labels, seed=scene.seed)
    patches = extract_patches(depth, camera=scene.camera, grasps=grasps, spec=config.patch)
    return GraspSamples(
        patches=patches,
        depths=grasps.depths.astype(np.float32),
        labels=qualities >= config.labels.threshold - 1e-9,
        qualities=qualities.astype(np.float32),
        scenes=np.full(len(grasps), index, dtype=np.int64),
    )


def _jittered(
    grasps: Grasps, *, depth: npt.NDArray[np.float64], config: DatasetConfig, rng: np.random.Generator
) -> Grasps:
    k = config.jitter_per_grasp
    n = len(grasps) * k
    h, w = depth.shape
    centers = np.repeat(grasps.centers, k, axis=0) + rng.normal(0.0, config.jitter_pixels, size=(n, 2))
    centers = np.clip(centers, 0.0, [w - 1.0, h - 1.0])
    angles = np.mod(
        np.repeat(grasps.angles, k) + rng.normal(0.0, np.radians(config.jitter_angle_deg), size=n), np.pi
    )
    depths = np.repeat(grasps.depths, k) + rng.normal(0.0, config.jitter_depth, size=n)
    jittered = Grasps(centers=centers, angles=angles, depths=depths, widths=np.zeros(n))
    return with_widths(depth, camera=config.camera, gripper=config.gripper, grasps=jittered)


class GraspDataset(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """Samples as tensors, for a training loop or a ``DistributedSampler``.

    Index it one sample at a time (the Dataset protocol), or fetch a whole batch of indices with
    :meth:`batch` (much faster than collating single items).

    Args:
        samples: the samples.
        augment: flip patches at random; a grasp's quality is unchanged by mirroring the patch
            across or along the jaw axis (the physics is mirror-symmetric).
        seed: seeds the augmentation.
    """

    def __init__(self, samples: GraspSamples, *, augment: bool = False, seed: int = 0) -> None:
        self.patches = torch.from_numpy(samples.patches)
        self.depths = torch.from_numpy(samples.depths)
        self.labels = torch.from_numpy(samples.labels.astype(np.float32))
        self.augment = augment
        self._generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        patches, depths, labels = self.batch(torch.tensor([index]))
        return patches[0], depths[0], labels[0]

    def batch(self, indices: torch.Tensor | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(patches (B, 1, S, S), depths (B,), labels (B,) float)`` for ``indices``."""
        index = torch.as_tensor(indices, dtype=torch.long)
        patches = self.patches[index].unsqueeze(1)
        if self.augment:
            flips = torch.rand((2, index.shape[0]), generator=self._generator) < 0.5
            patches = torch.where(flips[0, :, None, None, None], patches.flip(2), patches)
            patches = torch.where(flips[1, :, None, None, None], patches.flip(3), patches)
        return patches, self.depths[index], self.labels[index]
