"""PointCloud2 <-> numpy: every layout a driver may send, through real CDR."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fogros_dist.ros.types import MessageTypes
from fogros_dist.workloads.slam.pointcloud import POINTCLOUD2, make_cloud, read_points, stamp_ns

TYPES = MessageTypes("jazzy")
FLOAT32, FLOAT64, UINT16 = 7, 8, 4


def _points(count: int = 257) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.random.default_rng(1).normal(scale=10.0, size=(count, 3)).astype(np.float32)


def _through_cdr(msg: Any) -> Any:
    return TYPES.deserialize(POINTCLOUD2, TYPES.serialize(POINTCLOUD2, msg))


@pytest.mark.parametrize("big_endian", [False, True], ids=["little", "big"])
@pytest.mark.parametrize("point_step", [None, 32], ids=["packed", "padded"])
@pytest.mark.parametrize("with_intensity", [False, True], ids=["xyz", "xyzi"])
def test_round_trip(big_endian: bool, point_step: int | None, with_intensity: bool) -> None:
    points = _points()
    intensity = np.linspace(0, 1, points.shape[0], dtype=np.float32) if with_intensity else None
    times = np.linspace(0, 0.1, points.shape[0], dtype=np.float32)
    msg = make_cloud(
        points,
        types=TYPES,
        stamp=1_700_000_000_123_456_789,
        frame_id="lidar",
        intensity=intensity,
        times=times,
        point_step=point_step,
        big_endian=big_endian,
    )
    assert msg.point_step == (point_step or (20 if with_intensity else 16))
    assert msg.row_step == msg.point_step * points.shape[0]
    decoded = _through_cdr(msg)
    cloud = read_points(decoded)
    assert np.array_equal(cloud.xyz, points)
    assert cloud.total == points.shape[0]
    if with_intensity:
        assert cloud.intensity is not None
        assert np.array_equal(cloud.intensity, intensity)
    else:
        assert cloud.intensity is None
    assert cloud.times is not None
    assert np.array_equal(cloud.times, times.astype(np.float64))
    assert stamp_ns(decoded.header) == 1_700_000_000_123_456_789
    assert decoded.header.frame_id == "lidar"


def _custom_cloud(
    *,
    width: int,
    height: int,
    point_step: int,
    row_step: int,
    fields: list[tuple[str, int, int]],
    data: bytes,
) -> Any:
    field_cls = TYPES.message_class("sensor_msgs/msg/PointField")
    msg = make_cloud(np.zeros((0, 3), np.float32), types=TYPES, stamp=5, frame_id="lidar")
    msg.width, msg.height, msg.point_step, msg.row_step = width, height, point_step, row_step
    msg.fields = [field_cls(name=n, offset=o, datatype=d, count=1) for n, o, d in fields]
    msg.data = np.frombuffer(data, dtype=np.uint8)
    return msg


def test_organized_cloud_with_row_padding_float64_fields_and_nans() -> None:
    """A 2-row cloud: float64 x/y/z at odd offsets, a uint16 ring field, 8 pad bytes per row."""
    width, height, step = 5, 2, 40
    record = np.dtype({"names": ["ring", "x", "y", "z"], "formats": ["<u2", "<f8", "<f8", "<f8"],
                       "offsets": [0, 4, 12, 20], "itemsize": step})  # fmt: skip
    rows = np.zeros((height, width), dtype=record)
    xyz = np.arange(width * height * 3, dtype=np.float64).reshape(height, width, 3)
    xyz[1, 2] = np.nan  # a missing return in an organized cloud
    for axis, name in enumerate("xyz"):
        rows[name] = xyz[:, :, axis]
    row_step = width * step + 8
    data = b"".join(rows[r].tobytes() + b"\xee" * 8 for r in range(height))
    msg = _custom_cloud(
        width=width,
        height=height,
        point_step=step,
        row_step=row_step,
        fields=[("ring", 0, UINT16), ("x", 4, FLOAT64), ("y", 12, FLOAT64), ("z", 20, FLOAT64)],
        data=data,
    )
    cloud = read_points(_through_cdr(msg))
    expected = xyz.reshape(-1, 3)
    expected = expected[np.isfinite(expected).all(axis=1)]
    assert cloud.total == 10
    assert np.array_equal(cloud.xyz, expected.astype(np.float32))
    assert cloud.intensity is None
    assert cloud.times is None
    kept = read_points(msg, skip_nans=False)
    assert kept.xyz.shape == (10, 3)
    assert np.isnan(kept.xyz[7]).all()


def test_empty_cloud_reads_as_zero_points() -> None:
    cloud = read_points(_through_cdr(make_cloud(np.zeros((0, 3)), types=TYPES, stamp=1, frame_id="lidar")))
    assert cloud.total == 0
    assert cloud.xyz.shape == (0, 3)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"fields": [("x", 0, FLOAT32), ("y", 4, FLOAT32), ("intensity", 8, FLOAT32)]},
            r"PointCloud2 has no field 'z' \(fields: x, y, intensity\): publish x, y and z",
        ),
        ({"fields": [("x", 0, 9), ("y", 4, FLOAT32), ("z", 8, FLOAT32)]}, r"field 'x' has datatype 9"),
        ({"point_step": 8}, r"point_step 8 is smaller than its fields \(12 bytes\)"),
        ({"row_step": 12}, r"row_step 12 is below width \* point_step \(48\)"),
        ({"data": bytes(40)}, r"data has 40 bytes, 4x1 points of 12 bytes \(row_step 48\) need 48"),
    ],
)
def test_malformed_clouds_are_rejected_by_name(change: dict[str, Any], message: str) -> None:
    layout: dict[str, Any] = {
        "width": 4,
        "height": 1,
        "point_step": 12,
        "row_step": 48,
        "fields": [("x", 0, FLOAT32), ("y", 4, FLOAT32), ("z", 8, FLOAT32)],
        "data": bytes(48),
    }
    layout.update(change)
    with pytest.raises(ValueError, match=message):
        read_points(_custom_cloud(**layout))


def test_make_cloud_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"points have shape \(4, 2\): pass an \(N, 3\) array"):
        make_cloud(np.zeros((4, 2)), types=TYPES, stamp=0, frame_id="lidar")
    with pytest.raises(ValueError, match=r"intensity has 3 values for 4 points"):
        make_cloud(np.zeros((4, 3)), types=TYPES, stamp=0, frame_id="lidar", intensity=np.zeros(3))
    with pytest.raises(ValueError, match=r"point_step 8 is smaller than the 12 bytes"):
        make_cloud(np.zeros((4, 3)), types=TYPES, stamp=0, frame_id="lidar", point_step=8)
