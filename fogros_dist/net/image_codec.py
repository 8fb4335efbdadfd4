"""Pixel codecs for ``sensor_msgs/msg/Image``: split a message into its fields and its pixels,
compress the pixels (JPEG through libjpeg-turbo's ``simplejpeg``, PNG through Pillow), and splice
decoded pixels back behind the original fields.

``data`` is the last field of an Image, so a little-endian CDR message is ``<fields> <uint32 n>
<n pixel bytes>``. :func:`split_image` keeps the bytes before the pixels exactly as they arrived
(header, stamp, frame_id, height, width, encoding, is_bigendian, step and every padding byte) and
:func:`join_image` puts them back unchanged, so only the pixels can differ after a round trip.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import simplejpeg  # type: ignore[import-untyped]  # ships no type information
import zstandard

from fogros_dist.errors import FogError
from fogros_dist.ros.types import MessageTypes

__all__ = [
    "IMAGE",
    "JPEG_ENCODINGS",
    "PNG_ENCODINGS",
    "ImageCodecError",
    "ImageLayout",
    "SplitImage",
    "decode_jpeg",
    "decode_png",
    "encode_jpeg",
    "encode_png",
    "join_image",
    "layout_of_skeleton",
    "psnr_db",
    "read_layout",
    "split_image",
]

IMAGE = "sensor_msgs/msg/Image"

# encoding -> (simplejpeg colorspace, channels). Alpha is not part of JPEG: rgba8/bgra8 send their
# colour as JPEG and their alpha plane losslessly beside it (nothing at all when fully opaque).
JPEG_ENCODINGS: dict[str, tuple[str, int]] = {
    "rgb8": ("RGB", 3),
    "bgr8": ("BGR", 3),
    "rgba8": ("RGBX", 4),
    "bgra8": ("BGRX", 4),
    "mono8": ("GRAY", 1),
}

# encoding -> (channels, bytes per channel). PNG is lossless, so channel order does not matter
# (bgr8 is stored as if it were rgb8) and 8UCn images qualify as well as the named ones.
PNG_ENCODINGS: dict[str, tuple[int, int]] = {
    "mono8": (1, 1),
    "8UC1": (1, 1),
    "mono16": (1, 2),
    "16UC1": (1, 2),
    "rgb8": (3, 1),
    "bgr8": (3, 1),
    "8UC3": (3, 1),
    "rgba8": (4, 1),
    "bgra8": (4, 1),
    "8UC4": (4, 1),
}

_PNG_MODES = {(1, 1): "L", (3, 1): "RGB", (4, 1): "RGBA"}
# zlib level 3: measured on the grasp workload's noisy depth scenes, 3.5x at ~1.7 ms for
# 160x120 where level 6 gives 3.9x at 2.5x the time; level 1 is barely faster and smaller.
_PNG_LEVEL = 3
_U32 = struct.Struct("<I")
_CDR_LE = b"\x00\x01"
_OPAQUE = 255


class ImageCodecError(FogError):
    """Image bytes that do not decode into the image their fields describe."""


@dataclass(frozen=True, kw_only=True)
class ImageLayout:
    """What the pixel codecs need of an Image's fields."""

    height: int
    width: int
    encoding: str
    is_bigendian: bool
    step: int

    def channels_bytes(self) -> tuple[int, int] | None:
        """``(channels, bytes per channel)`` of a PNG-able encoding, else None."""
        return PNG_ENCODINGS.get(self.encoding)

    def packed(self, channels: int, per_channel: int) -> bool:
        """True when rows have no padding: ``step == width * channels * per_channel``."""
        return self.step == self.width * channels * per_channel


@dataclass(frozen=True)
class SplitImage:
    """An Image as its fields' CDR (``data`` empty) and a view of its pixels."""

    skeleton: bytes
    layout: ImageLayout
    pixels: memoryview


def read_layout(message: Any) -> ImageLayout:
    """The :class:`ImageLayout` of a decoded ``rosbags`` Image."""
    return ImageLayout(
        height=int(message.height),
        width=int(message.width),
        encoding=str(message.encoding),
        is_bigendian=bool(message.is_bigendian),
        step=int(message.step),
    )


def split_image(types: MessageTypes, cdr: bytes) -> SplitImage | None:
    """Split an Image's CDR into its fields and its pixels, or None where that would not give back
    the very same bytes (big-endian CDR, trailing bytes, pixels that do not fill ``step * height``).

    Raises:
        ConfigError: the bytes are not an Image.
    """
    if cdr[:2] != _CDR_LE:
        return None
    message = types.deserialize(IMAGE, cdr)
    layout = read_layout(message)
    count = len(message.data)
    start = len(cdr) - count
    if count != layout.step * layout.height or start < 8 or _U32.unpack_from(cdr, start - 4)[0] != count:
        return None
    skeleton = cdr[: start - 4] + _U32.pack(0)
    return SplitImage(skeleton=skeleton, layout=layout, pixels=memoryview(cdr)[start:])


def join_image(skeleton: bytes, pixels: bytes) -> bytes:
    """The Image CDR of ``skeleton`` (as :func:`split_image` made it) with ``pixels`` as its data."""
    return skeleton[:-4] + _U32.pack(len(pixels)) + pixels


def layout_of_skeleton(types: MessageTypes, skeleton: bytes) -> ImageLayout:
    """The layout in a received skeleton.

    Raises:
        ImageCodecError: the skeleton is not an Image without data.
    """
    if skeleton[:2] != _CDR_LE or len(skeleton) < 8 or skeleton[-4:] != b"\x00\x00\x00\x00":
        raise ImageCodecError("the image fields are not a little-endian Image with empty data")
    try:
        message = types.deserialize(IMAGE, skeleton)
    except FogError as err:
        raise ImageCodecError(f"the image fields do not decode ({err})") from err
    return read_layout(message)


def _array(split: SplitImage, channels: int) -> npt.NDArray[np.uint8]:
    layout = split.layout
    return np.frombuffer(split.pixels, dtype=np.uint8).reshape(layout.height, layout.width, channels)


def encode_jpeg(split: SplitImage, quality: int) -> bytes | None:
    """``<uint32 jpeg length> <jpeg> <alpha plane, zstd, or nothing when opaque>``; None when the
    encoding or row layout is not one JPEG takes."""
    found = JPEG_ENCODINGS.get(split.layout.encoding)
    if found is None or not split.layout.packed(found[1], 1) or split.layout.height * split.layout.width == 0:
        return None
    colorspace, channels = found
    image = _array(split, channels)
    # 4:4:4: chroma subsampling (4:2:0) costs 3-4 dB on textured frames (measured in
    # test_codecs.py), more than the quality setting can win back.
    subsampling = "Gray" if channels == 1 else "444"
    jpeg = simplejpeg.encode_jpeg(image, quality=quality, colorspace=colorspace, colorsubsampling=subsampling)
    alpha = b""
    if channels == 4:
        plane = np.ascontiguousarray(image[..., 3])
        if not bool((plane == _OPAQUE).all()):
            alpha = zstandard.ZstdCompressor(level=1).compress(plane.tobytes())
    return _U32.pack(len(jpeg)) + bytes(jpeg) + alpha


def decode_jpeg(payload: bytes, layout: ImageLayout) -> bytes:
    """The pixels of an :func:`encode_jpeg` payload for ``layout``.

    Raises:
        ImageCodecError: the payload is not a JPEG of that image.
    """
    found = JPEG_ENCODINGS.get(layout.encoding)
    if found is None or len(payload) < 4:
        raise ImageCodecError(f"a JPEG frame for an image of encoding {layout.encoding!r}")
    colorspace, channels = found
    (size,) = _U32.unpack_from(payload)
    jpeg = payload[4 : 4 + size]
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(jpeg)
        if (height, width) != (layout.height, layout.width):
            msg = f"a {width}x{height} JPEG for a {layout.width}x{layout.height} image"
            raise ImageCodecError(msg)
        image = simplejpeg.decode_jpeg(jpeg, colorspace=colorspace)
    except ValueError as err:
        raise ImageCodecError(f"the JPEG does not decode ({err})") from err
    alpha = payload[4 + size :]
    if channels == 4 and alpha:
        plane = _unzstd(alpha, layout.height * layout.width)
        image[..., 3] = np.frombuffer(plane, dtype=np.uint8).reshape(layout.height, layout.width)
    if image.shape != (layout.height, layout.width, channels):
        return _bad(layout)
    return bytes(image.tobytes())


def encode_png(split: SplitImage) -> bytes | None:
    """The pixels as one PNG (16-bit grey for mono16/16UC1); None when the encoding or row layout
    is not one PNG takes."""
    from PIL import Image  # Pillow is imported only by the topics that use PNG

    layout = split.layout
    found = layout.channels_bytes()
    if found is None or not layout.packed(*found) or layout.height * layout.width == 0:
        return None
    channels, per_channel = found
    if per_channel == 2:
        dtype = ">u2" if layout.is_bigendian else "<u2"
        grey = np.frombuffer(split.pixels, dtype=dtype).reshape(layout.height, layout.width)
        image = Image.fromarray(grey.astype("<u2", copy=False))  # mode I;16
    else:
        array = _array(split, channels)
        image = Image.fromarray(array[..., 0] if channels == 1 else array, mode=_PNG_MODES[found])
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=_PNG_LEVEL)
    return out.getvalue()


def decode_png(payload: bytes, layout: ImageLayout) -> bytes:
    """The pixels of an :func:`encode_png` payload for ``layout``, in the layout's byte order.

    Raises:
        ImageCodecError: the payload is not a PNG of that image.
    """
    from PIL import Image, UnidentifiedImageError

    found = layout.channels_bytes()
    if found is None:
        raise ImageCodecError(f"a PNG frame for an image of encoding {layout.encoding!r}")
    channels, per_channel = found
    try:
        image = Image.open(io.BytesIO(payload), formats=["PNG"])
        if image.size != (layout.width, layout.height):  # checked before any pixel is inflated
            msg = f"a {image.size[0]}x{image.size[1]} PNG for a {layout.width}x{layout.height} image"
            raise ImageCodecError(msg)
        array = np.asarray(image)
    except (OSError, ValueError, UnidentifiedImageError) as err:
        raise ImageCodecError(f"the PNG does not decode ({err})") from err
    if per_channel == 2:
        if array.dtype.itemsize != 2:
            return _bad(layout)
        return array.astype(">u2" if layout.is_bigendian else "<u2").tobytes()
    if array.dtype != np.uint8 or array.size != layout.height * layout.width * channels:
        return _bad(layout)
    return array.tobytes()


def psnr_db(original: memoryview, decoded: bytes, *, channels: int = 1, colour: int | None = None) -> float:
    """PSNR of 8-bit ``decoded`` against ``original`` in dB (inf when identical), over the first
    ``colour`` of every ``channels`` bytes (all by default; 3 of 4 leaves out a lossless alpha)."""
    a = np.frombuffer(original, dtype=np.uint8).reshape(-1, channels)[:, :colour].astype(np.int16)
    b = np.frombuffer(decoded, dtype=np.uint8).reshape(-1, channels)[:, :colour].astype(np.int16)
    mse = float(np.mean(np.square(a - b, dtype=np.int32)))
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def _unzstd(data: bytes, size: int) -> bytes:
    try:
        if zstandard.frame_content_size(data) != size:
            raise ImageCodecError(f"the alpha plane is not {size} bytes")
        return zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
    except zstandard.ZstdError as err:
        raise ImageCodecError(f"the alpha plane does not decode ({err})") from err


def _bad(layout: ImageLayout) -> bytes:
    msg = f"the decoded pixels do not fit a {layout.width}x{layout.height} {layout.encoding} image"
    raise ImageCodecError(msg)
