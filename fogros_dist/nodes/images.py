"""sensor_msgs/msg/Image <-> numpy, for nodes that compute on images."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["GRAY_ENCODINGS", "image_array", "sobel_magnitude", "to_gray"]

# encoding -> (dtype, channels); what the nodes accept. Anything else is rejected by name.
_ENCODINGS: dict[str, tuple[str, int]] = {
    "mono8": ("uint8", 1),
    "8UC1": ("uint8", 1),
    "mono16": ("uint16", 1),
    "16UC1": ("uint16", 1),
    "32FC1": ("float32", 1),
    "rgb8": ("uint8", 3),
    "bgr8": ("uint8", 3),
    "rgba8": ("uint8", 4),
    "bgra8": ("uint8", 4),
}
GRAY_ENCODINGS = frozenset(k for k, (_, c) in _ENCODINGS.items() if c == 1)


def image_array(msg: Any) -> npt.NDArray[Any]:
    """A (height, width[, channels]) view of an Image message's data.

    Raises ValueError naming the encoding or the size mismatch.
    """
    encoding = str(msg.encoding)
    if encoding not in _ENCODINGS:
        msg_text = f"image encoding {encoding!r} is not supported: use one of {', '.join(sorted(_ENCODINGS))}"
        raise ValueError(msg_text)
    dtype_name, channels = _ENCODINGS[encoding]
    dtype = np.dtype(dtype_name).newbyteorder(">" if msg.is_bigendian else "<")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * dtype.itemsize
    data = np.asarray(msg.data, dtype=np.uint8)
    if step < row_bytes or data.size < step * height:
        msg_text = (
            f"image {width}x{height} {encoding} needs step >= {row_bytes} and {row_bytes * height} bytes, "
            f"got step {step} and {data.size} bytes"
        )
        raise ValueError(msg_text)
    rows = data[: step * height].reshape(height, step)[:, :row_bytes]
    pixels = np.ascontiguousarray(rows).view(dtype)
    return pixels.reshape(height, width, channels) if channels > 1 else pixels.reshape(height, width)


def to_gray(msg: Any) -> npt.NDArray[np.float32]:
    """The image as float32 gray levels (color images averaged over RGB)."""
    pixels = image_array(msg).astype(np.float32)
    if pixels.ndim == 3:
        pixels = pixels[:, :, :3].mean(axis=2)
    return pixels


def sobel_magnitude(gray: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """Sobel gradient magnitude, scaled to 0..255 (border pixels are 0)."""
    out = np.zeros(gray.shape, dtype=np.float32)
    if gray.shape[0] < 3 or gray.shape[1] < 3:
        return out.astype(np.uint8)
    g = gray
    gx = (g[:-2, 2:] + 2 * g[1:-1, 2:] + g[2:, 2:]) - (g[:-2, :-2] + 2 * g[1:-1, :-2] + g[2:, :-2])
    gy = (g[2:, :-2] + 2 * g[2:, 1:-1] + g[2:, 2:]) - (g[:-2, :-2] + 2 * g[:-2, 1:-1] + g[:-2, 2:])
    magnitude = np.hypot(gx, gy)
    peak = float(magnitude.max())
    if peak > 0:
        magnitude *= 255.0 / peak
    out[1:-1, 1:-1] = magnitude
    return out.astype(np.uint8)
