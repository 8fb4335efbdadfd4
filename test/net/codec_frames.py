"""Realistic frames for the codec tests: textured noisy colour images and the grasp workload's
noisy depth scenes, as ``sensor_msgs/msg/Image`` CDR.

The colour frame model (the one ``net/codecs.py`` picks its JPEG quality on): a 1/f ("pink")
luminance texture, like natural images, times piecewise-constant object colours, blurred by a
Gaussian of ``blur`` px (lens and demosaicing), plus independent per-channel sensor noise of
``noise`` DN.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from fogros_dist.ros.types import MessageTypes
from fogros_dist.workloads.grasp.scene import Camera, NoiseModel, generate_scene, render_depth

IMAGE = "sensor_msgs/msg/Image"


def textured_rgb(
    seed: int, *, height: int = 480, width: int = 640, noise: float = 2.0, blur: float = 1.0
) -> npt.NDArray[np.uint8]:
    """A (height, width, 3) uint8 textured noisy frame."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft2(rng.normal(size=(height, width)))
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    radius = np.sqrt(fx**2 + fy**2)
    radius[0, 0] = 1.0
    texture = np.fft.irfft2(spectrum / radius, s=(height, width))
    texture = 0.5 + 0.18 * (texture - texture.mean()) / texture.std()
    colour = np.empty((height, width, 3))
    colour[:] = rng.uniform(60, 200, 3)
    for _ in range(10):
        y0, x0 = rng.integers(0, max(1, height - 40)), rng.integers(0, max(1, width - 40))
        colour[y0 : y0 + rng.integers(30, 160), x0 : x0 + rng.integers(30, 160)] = rng.uniform(20, 235, 3)
    image = _blur(colour * texture[..., None] * 1.4, blur) + rng.normal(0.0, noise, (height, width, 3))
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def depth_mm(seed: int, *, width: int = 320, height: int = 240) -> npt.NDArray[np.uint16]:
    """A grasp-workload noisy depth scene as 16UC1 millimetres (0 where the sensor had no return)."""
    camera = Camera.from_k(
        k=[width * 1.2, 0, width / 2, 0, width * 1.2, height / 2, 0, 0, 1], width=width, height=height
    )
    depth = render_depth(generate_scene(seed=seed, camera=camera), noise=NoiseModel(), seed=seed).depth
    return np.round(depth * 1000.0).astype(np.uint16)


def depth_m(seed: int) -> npt.NDArray[np.float32]:
    """A grasp-workload noisy depth scene as 32FC1 metres."""
    return render_depth(generate_scene(seed=seed), noise=NoiseModel(), seed=seed).depth.astype(np.float32)


def image_cdr(
    types: MessageTypes,
    pixels: npt.NDArray[Any],
    encoding: str,
    *,
    frame_id: str = "camera_optical_frame",
    stamp: tuple[int, int] = (1_700_000_123, 456_789_012),
    is_bigendian: int = 0,
    step: int | None = None,
) -> bytes:
    """``pixels`` as the CDR of an Image of ``encoding``."""
    height, width = pixels.shape[:2]
    data = np.frombuffer(pixels.tobytes(), dtype=np.uint8)
    row = data.size // height if height else 0
    if step is not None and step != row:  # padded rows: each row gets step - row zero bytes
        data = np.pad(data.reshape(height, row), ((0, 0), (0, step - row))).reshape(-1)
    image = types.message_class(IMAGE)
    header = types.message_class("std_msgs/msg/Header")
    time = types.message_class("builtin_interfaces/msg/Time")
    message = image(
        header=header(stamp=time(sec=stamp[0], nanosec=stamp[1]), frame_id=frame_id),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=is_bigendian,
        step=step if step is not None else row,
        data=data,
    )
    return types.serialize(IMAGE, message)


def _blur(image: npt.NDArray[np.float64], sigma: float) -> npt.NDArray[np.float64]:
    if sigma <= 0:
        return image
    radius = int(3 * sigma) + 1
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    h, w = image.shape[:2]
    padded = np.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    rows = sum(kernel[i] * padded[i : i + h] for i in range(2 * radius + 1))
    return np.asarray(sum(kernel[i] * rows[:, i : i + w] for i in range(2 * radius + 1)))


def _measure() -> None:
    """Print the figures ``net/codecs.py`` and README quote: JPEG quality/chroma vs PSNR, size
    and time on the colour frame model; PNG and zstd on the grasp depth scenes."""
    import time

    import simplejpeg  # type: ignore[import-untyped]

    from fogros_dist.net.codec_stats import CodecStats
    from fogros_dist.net.codecs import TopicEncoder
    from fogros_dist.net.image_codec import psnr_db

    def ms(start: int) -> float:
        return (time.perf_counter_ns() - start) / 1e6

    for noise in (2.0, 3.0):
        for quality in (85, 90, 95):
            for chroma in ("420", "444"):
                psnrs, ratios, times = [], [], []
                for seed in range(4):
                    rgb = textured_rgb(seed, noise=noise)
                    start = time.perf_counter_ns()
                    jpeg = simplejpeg.encode_jpeg(
                        rgb, quality=quality, colorspace="RGB", colorsubsampling=chroma
                    )
                    times.append(ms(start))
                    psnrs.append(psnr_db(memoryview(rgb.tobytes()), simplejpeg.decode_jpeg(jpeg).tobytes()))
                    ratios.append(rgb.nbytes / len(jpeg))
                print(
                    f"rgb 640x480 noise {noise:g} jpeg q{quality} {chroma}: PSNR min {min(psnrs):.1f} dB, "
                    f"{np.mean(ratios):.1f}x smaller, encode {np.median(times):.1f} ms"
                )
    types = MessageTypes("jazzy")
    for codec in ("png", "zstd", "zstd:3"):
        stats = CodecStats()
        encoder = TopicEncoder.for_topic(codec, IMAGE, types=types, stats=stats, topic="/depth")
        assert encoder is not None
        for seed in range(8):
            encoder.encode(image_cdr(types, depth_mm(seed), "16UC1"))
        snap = stats.snapshot()
        print(
            f"depth 320x240 16UC1 {codec}: {snap['ratio']:.2f}x smaller, "
            f"encode median {snap['time_ms']['median']:.2f} ms"
        )


if __name__ == "__main__":
    _measure()
