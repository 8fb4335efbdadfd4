"""Per-topic codecs: every codec round-trips, Image fields survive, auto picks as documented,
bad settings fail in one line, corrupt frames raise CodecError, stats count what happened."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from codec_frames import IMAGE, depth_m, depth_mm, image_cdr, textured_rgb

from fogros_dist.deploy.plan import make_plan
from fogros_dist.errors import ConfigError
from fogros_dist.net.codec_stats import CodecStats
from fogros_dist.net.codecs import (
    AUTO_JPEG_QUALITY,
    MAGIC,
    SMALL_MESSAGE_BYTES,
    CodecError,
    CodecSetting,
    FrameDecoder,
    TopicEncoder,
    check_codec_for_type,
    parse_codec,
)
from fogros_dist.net.image_codec import psnr_db, split_image
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import DeploymentSpec, MachineSpec, NodeSpec, TopicSpec

PSNR_FLOOR_DB = 38.0
MAX = 64 << 20


@pytest.fixture(scope="module")
def types() -> MessageTypes:
    return MessageTypes("jazzy")


def _encoder(types: MessageTypes, codec: str, type_name: str = IMAGE) -> tuple[TopicEncoder, CodecStats]:
    stats = CodecStats()
    encoder = TopicEncoder.for_topic(codec, type_name, types=types, stats=stats, topic="/camera")
    assert encoder is not None
    return encoder, stats


def _round_trip(
    types: MessageTypes, codec: str, cdr: bytes, type_name: str = IMAGE
) -> tuple[bytes, bytes, str]:
    encoder, stats = _encoder(types, codec, type_name)
    wire = encoder.encode(cdr)
    decoded = FrameDecoder(types=types, max_bytes=MAX, stats=CodecStats()).decode(wire)
    (used,) = stats.snapshot()["used"]
    return wire, decoded, used


def _fields(types: MessageTypes, cdr: bytes) -> tuple[object, ...]:
    m = types.deserialize(IMAGE, cdr)
    return (
        m.header.stamp.sec,
        m.header.stamp.nanosec,
        m.header.frame_id,
        m.height,
        m.width,
        m.encoding,
        m.is_bigendian,
        m.step,
        len(m.data),
    )


def _pixels(types: MessageTypes, cdr: bytes) -> bytes:
    return bytes(types.deserialize(IMAGE, cdr).data)


# -- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "setting"),
    [
        ("auto", CodecSetting("auto")),
        ("none", CodecSetting("none")),
        ("jpeg:90", CodecSetting("jpeg", 90)),
        ("JPEG:1", CodecSetting("jpeg", 1)),
        ("png", CodecSetting("png")),
        ("zstd", CodecSetting("zstd")),
        ("zstd:19", CodecSetting("zstd", 19)),
    ],
)
def test_valid_settings_parse(text: str, setting: CodecSetting) -> None:
    assert parse_codec(text) == setting


@pytest.mark.parametrize(
    "text", ["jpeg", "jpeg:0", "jpeg:101", "zstd:0", "zstd:23", "png:3", "auto:1", "lz4", "", "jpeg:9x"]
)
def test_bad_settings_fail_in_one_line_naming_value_and_forms(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_codec(text, topic="/camera/image")
    message = str(info.value)
    assert "\n" not in message
    assert repr(text) in message
    assert "/camera/image" in message
    assert "'jpeg:<1..100>'" in message
    assert "'zstd:<1..22>'" in message


def test_image_codecs_refused_on_other_types() -> None:
    with pytest.raises(
        ConfigError, match=r"codec 'jpeg:80' of topic /scan applies to sensor_msgs/msg/Image only"
    ):
        check_codec_for_type(parse_codec("jpeg:80"), "sensor_msgs/msg/LaserScan", topic="/scan")
    check_codec_for_type(parse_codec("png"), IMAGE, topic="/d")
    check_codec_for_type(parse_codec("zstd"), "sensor_msgs/msg/LaserScan", topic="/scan")
    check_codec_for_type(parse_codec("jpeg:80"), None, topic="/learned")


def test_bad_setting_fails_building_the_encoder(types: MessageTypes) -> None:
    with pytest.raises(ConfigError, match="codec 'gzip' of topic /camera is invalid"):
        TopicEncoder.for_topic("gzip", IMAGE, types=types, stats=CodecStats(), topic="/camera")


# -- auto picks ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "channels", "expected"),
    [
        ("rgb8", 3, f"jpeg:{AUTO_JPEG_QUALITY}"),
        ("bgr8", 3, f"jpeg:{AUTO_JPEG_QUALITY}"),
        ("rgba8", 4, f"jpeg:{AUTO_JPEG_QUALITY}"),
        ("bgra8", 4, f"jpeg:{AUTO_JPEG_QUALITY}"),
        ("mono8", 1, f"jpeg:{AUTO_JPEG_QUALITY}"),
        ("8UC3", 3, "zstd"),
    ],
)
def test_auto_picks_by_colour_encoding(
    types: MessageTypes, encoding: str, channels: int, expected: str
) -> None:
    rgb = textured_rgb(1, height=120, width=160)
    pixels = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]) if channels == 4 else rgb[..., :channels]
    _, _decoded, used = _round_trip(types, "auto", image_cdr(types, np.ascontiguousarray(pixels), encoding))
    assert used == expected


def test_auto_picks_zstd_for_depth_and_png_only_when_asked(types: MessageTypes) -> None:
    assert _round_trip(types, "auto", image_cdr(types, depth_mm(3), "16UC1"))[2] == "zstd"
    assert _round_trip(types, "auto", image_cdr(types, depth_mm(3), "mono16"))[2] == "zstd"
    assert _round_trip(types, "png", image_cdr(types, depth_mm(3), "16UC1"))[2] == "png"
    assert _round_trip(types, "auto", image_cdr(types, depth_m(3), "32FC1"))[2] == "zstd"


def test_auto_sends_small_messages_and_compressed_images_as_they_are(types: MessageTypes) -> None:
    small = image_cdr(types, textured_rgb(2, height=16, width=16), "rgb8")
    assert len(small) < SMALL_MESSAGE_BYTES
    encoder, stats = _encoder(types, "auto")
    assert encoder.encode(small) is small
    assert stats.snapshot()["used"] == {"none": 1}
    assert (
        TopicEncoder.for_topic(
            "auto", "sensor_msgs/msg/CompressedImage", types=types, stats=CodecStats(), topic="/c"
        )
        is None
    )


def test_auto_compresses_point_clouds_with_zstd(types: MessageTypes) -> None:
    cloud = types.message_class("sensor_msgs/msg/PointCloud2")
    field = types.message_class("sensor_msgs/msg/PointField")
    header = types.message_class("std_msgs/msg/Header")
    stamp = types.message_class("builtin_interfaces/msg/Time")
    rng = np.random.default_rng(5)
    points = np.round(rng.normal(0, 5, (20_000, 3)), 2).astype(np.float32)  # centimetre LiDAR points
    message = cloud(
        header=header(stamp=stamp(sec=1, nanosec=2), frame_id="lidar"),
        height=1,
        width=len(points),
        fields=[field(name=n, offset=4 * i, datatype=7, count=1) for i, n in enumerate("xyz")],
        is_bigendian=False,
        point_step=12,
        row_step=12 * len(points),
        data=np.frombuffer(points.tobytes(), np.uint8),
        is_dense=True,
    )
    cdr = types.serialize("sensor_msgs/msg/PointCloud2", message)
    wire, decoded, used = _round_trip(types, "auto", cdr, "sensor_msgs/msg/PointCloud2")
    assert used == "zstd"
    assert decoded == cdr
    assert len(wire) < len(cdr)


def test_jpeg_setting_never_makes_depth_lossy(types: MessageTypes) -> None:
    for encoding, pixels, lossless in (("16UC1", depth_mm(4), "zstd"), ("32FC1", depth_m(4), "zstd")):
        cdr = image_cdr(types, pixels, encoding)
        _, decoded, used = _round_trip(types, "jpeg:50", cdr)
        assert (used, decoded) == (lossless, cdr)


# -- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["png", "zstd", "zstd:9", "none", "auto"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lossless_codecs_are_bit_exact_on_noisy_depth_scenes(
    types: MessageTypes, codec: str, seed: int
) -> None:
    cdr = image_cdr(types, depth_mm(seed), "16UC1", frame_id=f"depth_{seed}", stamp=(seed, 999_999_999))
    if codec == "none":
        assert TopicEncoder.for_topic("none", IMAGE, types=types, stats=CodecStats(), topic="/d") is None
        return
    wire, decoded, _ = _round_trip(types, codec, cdr)
    assert decoded == cdr
    assert wire[:1] == MAGIC[:1]
    assert len(wire) < len(cdr) / 2


def test_png_keeps_big_endian_16_bit_images_exact(types: MessageTypes) -> None:
    cdr = image_cdr(types, depth_mm(6).astype(">u2"), "mono16", is_bigendian=1)
    _wire, decoded, used = _round_trip(types, "png", cdr)
    assert used == "png"
    assert decoded == cdr


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8", "rgba8"])
def test_png_is_bit_exact_on_8_bit_images(types: MessageTypes, encoding: str) -> None:
    rgb = textured_rgb(7, height=240, width=320)
    pixels = {"mono8": rgb[..., 1], "rgba8": np.dstack([rgb, rgb[..., 0]])}.get(encoding, rgb)
    cdr = image_cdr(types, np.ascontiguousarray(pixels), encoding)
    _, decoded, used = _round_trip(types, "png", cdr)
    assert used == "png"
    assert decoded == cdr


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_auto_jpeg_stays_above_the_psnr_floor_on_textured_noisy_frames(
    types: MessageTypes, seed: int
) -> None:
    rgb = textured_rgb(seed)
    cdr = image_cdr(types, rgb, "bgr8", frame_id="cam", stamp=(42, 7))
    wire, decoded, used = _round_trip(types, "auto", cdr)
    assert used == f"jpeg:{AUTO_JPEG_QUALITY}"
    psnr = psnr_db(memoryview(rgb.tobytes()), _pixels(types, decoded))
    assert psnr >= PSNR_FLOOR_DB, f"PSNR {psnr:.2f} dB below {PSNR_FLOOR_DB}"
    assert len(wire) < len(cdr) / 5
    assert _fields(types, decoded) == _fields(types, cdr)
    split = split_image(types, cdr)
    assert split is not None
    assert decoded[: len(split.skeleton) - 4] == cdr[: len(split.skeleton) - 4]  # fields byte for byte


def test_chroma_subsampling_would_break_the_floor(types: MessageTypes) -> None:
    # Why the JPEG codec keeps 4:4:4: the same frame and quality with 4:2:0 falls below 38 dB.
    import simplejpeg

    rgb = textured_rgb(0)
    jpeg = simplejpeg.encode_jpeg(rgb, quality=AUTO_JPEG_QUALITY, colorspace="RGB", colorsubsampling="420")
    assert psnr_db(memoryview(rgb.tobytes()), simplejpeg.decode_jpeg(jpeg).tobytes()) < PSNR_FLOOR_DB


def test_rgba_alpha_crosses_losslessly_beside_the_jpeg(types: MessageTypes) -> None:
    rgb = textured_rgb(8, height=240, width=320)
    alpha = (np.arange(240 * 320, dtype=np.uint32).reshape(240, 320) % 251).astype(np.uint8)
    cdr = image_cdr(types, np.dstack([rgb, alpha]), "rgba8")
    _, decoded, used = _round_trip(types, "jpeg:90", cdr)
    out = np.frombuffer(_pixels(types, decoded), np.uint8).reshape(240, 320, 4)
    assert used == "jpeg:90"
    assert np.array_equal(out[..., 3], alpha)


def test_padded_rows_go_lossless(types: MessageTypes) -> None:
    cdr = image_cdr(types, textured_rgb(9, height=120, width=160), "rgb8", step=160 * 3 + 16)
    _, decoded, used = _round_trip(types, "auto", cdr)
    assert (used, decoded) == ("zstd", cdr)


def test_incompressible_messages_cross_as_they_are(types: MessageTypes) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (100, 200, 4), dtype=np.uint8).view(np.float32)[..., 0]
    cdr = image_cdr(types, np.ascontiguousarray(noise), "32FC1")
    encoder, stats = _encoder(types, "zstd")
    assert encoder.encode(cdr) is cdr
    assert stats.snapshot()["used"] == {"none": 1}


def test_raw_cdr_passes_the_decoder_untouched(types: MessageTypes) -> None:
    cdr = image_cdr(types, depth_mm(0), "16UC1")
    stats = CodecStats()
    assert FrameDecoder(types=types, max_bytes=MAX, stats=stats).decode(cdr) is cdr
    assert stats.snapshot()["used"] == {"none": 1}


# -- corrupt frames ------------------------------------------------------------------------------


def _frames(types: MessageTypes) -> dict[str, bytes]:
    rgb = image_cdr(types, textured_rgb(0, height=240, width=320), "rgb8")
    depth = image_cdr(types, depth_mm(0), "16UC1")
    return {
        "jpeg": _encoder(types, "jpeg:90")[0].encode(rgb),
        "png": _encoder(types, "png")[0].encode(depth),
        "zstd": _encoder(types, "zstd")[0].encode(depth),
    }


@pytest.mark.parametrize("codec", ["jpeg", "png", "zstd"])
def test_corrupt_frames_raise_codec_error(types: MessageTypes, codec: str) -> None:
    frame = _frames(types)[codec]
    decoder = FrameDecoder(types=types, max_bytes=MAX, stats=CodecStats())
    assert decoder.decode(frame)  # the intact frame decodes
    mangled = bytearray(frame)
    mangled[len(frame) // 2 : len(frame) // 2 + 64] = b"\xa5" * 64
    size = struct.unpack_from("<I", frame, 5)[0]
    cases = {
        "truncated header": frame[:6],
        "truncated body": frame[: len(frame) // 2],
        "bad magic": b"\xf7XX" + frame[3:],
        "bad version": frame[:3] + b"\x09" + frame[4:],
        "unknown codec": frame[:4] + b"\x63" + frame[5:],
        "wrong size": frame[:5] + struct.pack("<I", size + 1) + frame[9:],
        "garbled payload": bytes(mangled),
    }
    for case, data in cases.items():
        try:
            decoder.decode(data)
        except CodecError:
            continue
        pytest.fail(f"a {codec} frame with a {case} decoded")


def test_frames_announcing_more_than_the_limit_are_refused_before_decoding(types: MessageTypes) -> None:
    frame = _frames(types)["zstd"]
    with pytest.raises(CodecError, match="more than max_message_bytes 1000"):
        FrameDecoder(types=types, max_bytes=1000, stats=CodecStats()).decode(frame)


# -- stats ---------------------------------------------------------------------------------------


def test_stats_report_bytes_times_and_sampled_psnr(types: MessageTypes) -> None:
    encoder, stats = _encoder(types, "auto")
    cdr = image_cdr(types, textured_rgb(3, height=240, width=320), "rgb8")
    for _ in range(31):
        encoder.encode(cdr)
    snap = stats.snapshot()
    assert snap["setting"] == "auto"
    assert snap["used"] == {f"jpeg:{AUTO_JPEG_QUALITY}": 31}
    assert snap["raw_bytes"] == 31 * len(cdr)
    assert 0 < snap["wire_bytes"] < snap["raw_bytes"] / 4
    assert snap["ratio"] > 4
    assert snap["time_ms"]["samples"] == 31
    assert snap["time_ms"]["median"] > 0
    assert snap["psnr_db"]["samples"] == 2
    assert snap["psnr_db"]["min"] >= PSNR_FLOOR_DB


# -- plan time -----------------------------------------------------------------------------------


def _plan_with(topic: TopicSpec) -> None:
    node = NodeSpec(name="detector", package="p", executable="e", machine="gpu", topics_in=(topic,))
    make_plan(DeploymentSpec(name="codecs", machines=(MachineSpec(name="gpu"),), nodes=(node,)))


def test_a_bad_codec_fails_the_plan_in_one_line() -> None:
    with pytest.raises(
        ConfigError, match=r"^codec 'jpeg:0' of topic /camera/color needs a JPEG quality 1..100"
    ):
        _plan_with(TopicSpec(name="/camera/color", type=IMAGE, codec="jpeg:0"))
    with pytest.raises(
        ConfigError, match=r"^codec 'png' of topic /points applies to sensor_msgs/msg/Image only"
    ):
        _plan_with(TopicSpec(name="/points", type="sensor_msgs/msg/PointCloud2", codec="png"))
    _plan_with(TopicSpec(name="/camera/color", type=IMAGE, codec="jpeg:95"))
