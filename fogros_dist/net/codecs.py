"""Per-topic codecs: how a bridged message crosses the link, transparent to both ROS graphs.

The robot publishes a raw ``sensor_msgs/msg/Image``; the cloud node receives a raw
``sensor_msgs/msg/Image`` with the same header, stamp, frame_id, height, width, encoding,
is_bigendian and step (byte for byte: the fields' bytes travel as they are, see
:mod:`fogros_dist.net.image_codec`); only lossy codecs change pixels, and only of colour or mono8
images.

Settings (``TopicSpec.codec``, checked by :func:`parse_codec`):

* ``auto`` (default) decides per message: an Image of ``rgb8``/``bgr8``/``rgba8``/``bgra8``/
  ``mono8`` -> ``jpeg:90``; depth and any other Image, ``sensor_msgs/msg/PointCloud2`` and every
  other type -> ``zstd`` (lossless); ``CompressedImage`` (already compressed) -> ``none``. Why zstd
  and not PNG for 16-bit depth: on the bench's 640x480 noisy grasp scenes (bench/bridge_wan.py)
  zstd level 1 gives 158 KB/frame in 1.9 ms, PNG 160 KB in ~24 ms at zlib level 3 and 137 KB in
  65 ms at level 6; at 10-30 Hz the encode time is what a robot's CPU and the latency tail feel.
* ``none``: the CDR as it is. ``zstd`` / ``zstd:<1..22>``: the whole CDR through zstd (level 1
  by default: at camera rates the fastest level keeps most of the ratio, 3.72x vs 3.84x at level
  3 on the grasp workload's 320x240 depth scenes, in 60 % of the time).
* ``jpeg:<1..100>``: JPEG of the colour/mono8 images' pixels; other images of the topic go
  losslessly (``zstd``), since depth must never be lossy.
* ``png``: lossless PNG of 8-bit and 16-bit images; other images ``zstd``.

Whatever the setting, messages under 4 KiB cross as they are (compressing them saves less than
the frame's own cost), and so does any message whose encoding would not be smaller.

Why quality 90 with 4:4:4 chroma: on textured, noisy 640x480 colour frames (1/f texture,
1 px optical blur, sensor noise sigma 2 DN; ``python test/net/codec_frames.py`` prints the
table) libjpeg-turbo gives at least 39.2 dB PSNR at quality 90 4:4:4 (7.9x smaller, 1.5 ms to
encode), but 36.3 dB with 4:2:0 chroma and 38.3 dB at quality 85: 90 is the lowest quality that
stays above 38 dB with a margin. PSNR is measured against the noisy original (the codec's
smoothing of sensor noise counts as error), so a noisier camera (sigma 3) gets 37.4 dB at
quality 90 and 38.2 dB with ``jpeg:95``.

Wire frame (``MAGIC``, version, codec id, original CDR length, payload): raw CDR starts with a
zero byte (its encapsulation header ``00 01 00 00``), a frame with ``0xF7``, so a receiver tells
them apart from the first byte and decodes whatever codec the sender chose; raw CDR passes
through untouched. A corrupt frame (truncated, bad magic or version, unknown codec, decoder
error, a size other than announced) raises :class:`CodecError`; the bridge counts it as
``dropped_codec`` and drops it.
"""

from __future__ import annotations

import re
import struct
import threading
import time
from dataclasses import dataclass
from typing import Literal

import zstandard

from fogros_dist.errors import ConfigError, FogError
from fogros_dist.logs import module_logger
from fogros_dist.net.codec_stats import CodecStats
from fogros_dist.net.image_codec import (
    IMAGE,
    JPEG_ENCODINGS,
    ImageCodecError,
    SplitImage,
    decode_jpeg,
    decode_png,
    encode_jpeg,
    encode_png,
    join_image,
    layout_of_skeleton,
    psnr_db,
    split_image,
)
from fogros_dist.ros.types import MessageTypes

__all__ = [
    "AUTO_JPEG_QUALITY",
    "DEFAULT_ZSTD_LEVEL",
    "MAGIC",
    "PSNR_EVERY",
    "SMALL_MESSAGE_BYTES",
    "CodecError",
    "CodecSetting",
    "FrameDecoder",
    "TopicEncoder",
    "check_codec_for_type",
    "parse_codec",
]

CodecKind = Literal["auto", "none", "jpeg", "png", "zstd"]

AUTO_JPEG_QUALITY = 90
DEFAULT_ZSTD_LEVEL = 1
SMALL_MESSAGE_BYTES = 4096
# Every 30th lossy frame (about once a second from a 30 Hz camera) is decoded again on the
# sender to measure its PSNR: a JPEG decode and a subtraction, ~3 ms, too much for every frame.
PSNR_EVERY = 30
MAGIC = b"\xf7FZ"
VERSION = 1
POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"

_log = module_logger(__name__)

_FORMS = "use 'auto', 'none', 'jpeg:<1..100>' (e.g. 'jpeg:90'), 'png', 'zstd' or 'zstd:<1..22>'"
_PATTERN = re.compile(r"(auto|none|png|zstd|jpeg)(?::(\d{1,3}))?")
_HEADER = struct.Struct("<3sBBI")  # magic, version, codec id, original CDR length
_U32 = struct.Struct("<I")
_ZSTD, _JPEG, _PNG = 1, 2, 3
_IDS = {_ZSTD: "zstd", _JPEG: "jpeg", _PNG: "png"}


class CodecError(FogError):
    """A received frame that does not decode into the message it announces."""


@dataclass(frozen=True)
class CodecSetting:
    """A parsed ``TopicSpec.codec``: ``kind`` and its level (JPEG quality or zstd level)."""

    kind: CodecKind
    level: int | None = None

    def __str__(self) -> str:
        return self.kind if self.level is None else f"{self.kind}:{self.level}"

    @property
    def lossy(self) -> bool:
        """True when the setting can change pixels (``jpeg`` and ``auto``)."""
        return self.kind in ("jpeg", "auto")


def parse_codec(text: str, *, topic: str | None = None) -> CodecSetting:
    """Parse a ``TopicSpec.codec`` string.

    Raises:
        ConfigError: not one of the valid forms (the message names the value, the topic and them).
    """
    where = f" of topic {topic}" if topic else ""
    found = _PATTERN.fullmatch(text.strip().lower()) if isinstance(text, str) else None
    if found is None:
        raise ConfigError(f"codec {text!r}{where} is invalid: {_FORMS}")
    kind: CodecKind = found.group(1)  # type: ignore[assignment]
    level = int(found.group(2)) if found.group(2) is not None else None
    if kind == "jpeg" and (level is None or not 1 <= level <= 100):
        raise ConfigError(f"codec {text!r}{where} needs a JPEG quality 1..100: e.g. 'jpeg:90' ({_FORMS})")
    if kind == "zstd" and level is not None and not 1 <= level <= 22:
        raise ConfigError(f"codec {text!r}{where} has zstd level {level}, out of range: {_FORMS}")
    if kind in ("auto", "none", "png") and level is not None:
        raise ConfigError(f"codec {text!r}{where} takes no level: {_FORMS}")
    return CodecSetting(kind, level)


def check_codec_for_type(setting: CodecSetting, type_name: str | None, *, topic: str) -> None:
    """Refuse an image codec on a topic whose type is known not to be an Image.

    Raises:
        ConfigError: ``jpeg``/``png`` on a type other than ``sensor_msgs/msg/Image``.
    """
    if setting.kind in ("jpeg", "png") and type_name is not None and type_name != IMAGE:
        msg = (
            f"codec {str(setting)!r} of topic {topic} applies to {IMAGE} only, not {type_name}: "
            "use 'zstd' (lossless, any type), 'none' or 'auto'"
        )
        raise ConfigError(msg)


class TopicEncoder:
    """Encodes one outbound topic's messages; never raises (a message it cannot encode is sent
    as it is, counted in its stats' ``errors``).

    Args:
        setting: the topic's codec setting (not ``none``: the bridge skips encoding then).
        type_name: the topic's message type.
        types: message types to read Images with.
        stats: where to count what it does.
        topic: the topic's name, for the one warning its first failure logs.
    """

    def __init__(
        self,
        *,
        setting: CodecSetting,
        type_name: str,
        types: MessageTypes,
        stats: CodecStats,
        topic: str = "",
    ) -> None:
        self._topic = topic
        self._setting = setting
        self._type = type_name
        self._types = types
        self._stats = stats
        self._lock = threading.Lock()  # zstd contexts are not thread-safe
        self._zstd = zstandard.ZstdCompressor(
            level=setting.level if setting.kind == "zstd" and setting.level else DEFAULT_ZSTD_LEVEL,
            write_checksum=True,  # 4 bytes: a corrupted payload fails instead of decoding to garbage
        )
        self._lossy_count = 0
        self.last_error: str | None = None
        stats.set_setting(str(setting), psnr_every=PSNR_EVERY if setting.lossy else 0)

    @classmethod
    def for_topic(
        cls, codec: str, type_name: str, *, types: MessageTypes, stats: CodecStats, topic: str
    ) -> TopicEncoder | None:
        """The encoder of a topic's ``codec`` setting, or None for ``none`` or a type that always
        crosses as it is (``CompressedImage`` under ``auto``).

        Raises:
            ConfigError: as :func:`parse_codec`.
        """
        setting = parse_codec(codec, topic=topic)
        if setting.kind == "none" or (setting.kind == "auto" and type_name == COMPRESSED_IMAGE):
            stats.set_setting(str(setting))
            return None
        return cls(setting=setting, type_name=type_name, types=types, stats=stats, topic=topic)

    def encode(self, cdr: bytes) -> bytes:
        """The bytes to put on the link for the raw CDR message ``cdr``."""
        if len(cdr) < SMALL_MESSAGE_BYTES:
            self._stats.record("none", len(cdr), len(cdr), None)
            return cdr
        start = time.perf_counter_ns()
        try:
            codec, wire, split = self._encode(cdr)
        except Exception as err:  # a codec library's failure must not stop the topic
            self._failed(f"{type(err).__name__}: {err}")
            codec, wire, split = "none", cdr, None
        elapsed = time.perf_counter_ns() - start
        if len(wire) >= len(cdr):  # nothing gained: the receiver is spared the decoding
            codec, wire = "none", cdr
        self._stats.record(codec, len(cdr), len(wire), None if codec == "none" else elapsed)
        if codec.startswith("jpeg") and split is not None:
            self._sample_psnr(split, wire)
        return wire

    def _encode(self, cdr: bytes) -> tuple[str, bytes, SplitImage | None]:
        kind = self._setting.kind
        if self._type == IMAGE and kind != "zstd":
            split = split_image(self._types, cdr)
            if split is not None:
                encoding = split.layout.encoding
                quality = self._setting.level if kind == "jpeg" else AUTO_JPEG_QUALITY
                if kind != "png" and encoding in JPEG_ENCODINGS and quality is not None:
                    payload = encode_jpeg(split, quality)
                    if payload is not None:
                        return f"jpeg:{quality}", _image_frame(_JPEG, cdr, split, payload), split
                if kind == "png":
                    payload = encode_png(split)
                    if payload is not None:
                        return "png", _image_frame(_PNG, cdr, split, payload), None
        with self._lock:
            packed = self._zstd.compress(cdr)
        return "zstd", _HEADER.pack(MAGIC, VERSION, _ZSTD, len(cdr)) + packed, None

    def _sample_psnr(self, split: SplitImage, wire: bytes) -> None:
        self._lossy_count += 1
        if (self._lossy_count - 1) % PSNR_EVERY:
            return
        try:
            payload = wire[_HEADER.size + 4 + len(split.skeleton) :]
            channels = JPEG_ENCODINGS[split.layout.encoding][1]
            decoded = decode_jpeg(payload, split.layout)
            colour = min(channels, 3)  # an alpha plane crosses losslessly: not part of the PSNR
            self._stats.record_psnr(psnr_db(split.pixels, decoded, channels=channels, colour=colour))
        except ImageCodecError as err:
            self._failed(str(err))

    def _failed(self, reason: str) -> None:
        self._stats.error()
        if self.last_error is None:
            _log.warning(
                "cannot encode a %s message on %s with codec %s (%s): sent as it is; further "
                "failures are only counted (codec errors)",
                self._type,
                self._topic,
                self._setting,
                reason,
            )
        self.last_error = reason


class FrameDecoder:
    """Turns what arrives on one inbound topic back into raw CDR.

    Args:
        types: message types to read Image fields with.
        max_bytes: the largest message the bridge accepts; a frame announcing more is refused
            before anything is decompressed.
        stats: where to count what it does.
    """

    def __init__(self, *, types: MessageTypes, max_bytes: int, stats: CodecStats) -> None:
        self._types = types
        self._max_bytes = max_bytes
        self._stats = stats
        self._lock = threading.Lock()
        self._zstd = zstandard.ZstdDecompressor()

    def decode(self, data: bytes) -> bytes:
        """Raw CDR from ``data``: a frame is decoded, anything else returned as it is.

        Raises:
            CodecError: a corrupt frame; the message names what is wrong with it.
        """
        if data[:1] != MAGIC[:1]:
            self._stats.record("none", len(data), len(data), None)
            return data
        start = time.perf_counter_ns()
        if len(data) < _HEADER.size:
            raise CodecError(f"a {len(data)}-byte codec frame is shorter than its header")
        magic, version, codec, size = _HEADER.unpack_from(data)
        if magic != MAGIC or version != VERSION:
            raise CodecError(f"not a codec frame of version {VERSION} (magic {magic!r}, version {version})")
        if codec not in _IDS:
            raise CodecError(f"unknown codec id {codec} (known: {sorted(_IDS)})")
        if size > self._max_bytes:
            raise CodecError(
                f"the frame announces {size} bytes, more than max_message_bytes {self._max_bytes}"
            )
        body = data[_HEADER.size :]
        try:
            cdr = self._zstd_body(body, size) if codec == _ZSTD else self._image_body(codec, body)
        except CodecError:
            raise
        except Exception as err:  # corrupt bytes fail anywhere inside a codec library
            raise CodecError(f"{_IDS[codec]} frame: {err}") from err
        if len(cdr) != size:
            raise CodecError(f"{_IDS[codec]} frame decoded to {len(cdr)} bytes, not the announced {size}")
        elapsed = time.perf_counter_ns() - start
        self._stats.record(_IDS[codec], size, len(data), elapsed)
        return cdr

    def _zstd_body(self, body: bytes, size: int) -> bytes:
        try:
            # The frame's own content size is checked first: zstd would trust it over any limit.
            if zstandard.frame_content_size(body) != size:
                raise CodecError(f"zstd frame content size is not the announced {size} bytes")
            with self._lock:
                return self._zstd.decompress(body, max_output_size=size)
        except zstandard.ZstdError as err:
            raise CodecError(f"zstd frame does not decode ({err})") from err

    def _image_body(self, codec: int, body: bytes) -> bytes:
        if len(body) < 4:
            raise CodecError("image frame is truncated before its fields")
        (skeleton_size,) = _U32.unpack_from(body)
        skeleton = body[4 : 4 + skeleton_size]
        if len(skeleton) != skeleton_size:
            raise CodecError("image frame is truncated inside its fields")
        layout = layout_of_skeleton(self._types, skeleton)
        if layout.step * layout.height + len(skeleton) > self._max_bytes:
            raise CodecError("image frame announces more pixels than max_message_bytes allows")
        payload = body[4 + skeleton_size :]
        pixels = decode_jpeg(payload, layout) if codec == _JPEG else decode_png(payload, layout)
        if len(pixels) != layout.step * layout.height:
            raise CodecError(
                f"decoded {len(pixels)} pixel bytes, not step*height {layout.step * layout.height}"
            )
        return join_image(skeleton, pixels)


def _image_frame(codec: int, cdr: bytes, split: SplitImage, payload: bytes) -> bytes:
    header = _HEADER.pack(MAGIC, VERSION, codec, len(cdr))
    return header + _U32.pack(len(split.skeleton)) + split.skeleton + payload
