"""sensor_msgs/msg/PointCloud2 <-> numpy, with ``rosbags`` message classes.

Reading builds one numpy structured dtype from the message's fields (offsets, ``point_step`` as
the item size, the byte order from ``is_bigendian``) and views the data through it: no Python
loop over points. Rows padded beyond ``width * point_step`` (``row_step``) are cut out first.
Writing packs x, y, z (and optionally intensity and a per-point time) as FLOAT32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from fogros_dist.ros.types import MessageTypes

__all__ = [
    "POINTCLOUD2",
    "POINT_DATATYPES",
    "TIME_FIELDS",
    "CloudArrays",
    "make_cloud",
    "make_header",
    "read_points",
    "stamp_ns",
]

POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
# sensor_msgs/msg/PointField datatype constants -> numpy scalar type.
POINT_DATATYPES: dict[int, type[np.generic]] = {
    1: np.int8,
    2: np.uint8,
    3: np.int16,
    4: np.uint16,
    5: np.int32,
    6: np.uint32,
    7: np.float32,
    8: np.float64,
}
_FLOAT32 = 7
# Per-point time fields drivers publish (Ouster "t", Velodyne "time", Hesai "timestamp").
TIME_FIELDS = ("t", "time", "timestamp", "timestamps")


@dataclass(frozen=True, kw_only=True, eq=False)
class CloudArrays:
    """The points of a PointCloud2 as arrays.

    Attributes:
        xyz: (N, 3) float32.
        intensity: (N,) float32, or None when the cloud has no ``intensity`` field.
        times: (N,) float64 per-point times in the driver's unit, or None without a time field.
        total: points in the message (``width * height``), before non-finite ones were dropped.
    """

    xyz: npt.NDArray[np.float32]
    intensity: npt.NDArray[np.float32] | None
    times: npt.NDArray[np.float64] | None
    total: int


def stamp_ns(header: Any) -> int:
    """A std_msgs/msg/Header's stamp in nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def make_header(types: MessageTypes, *, stamp: int, frame_id: str) -> Any:
    """A std_msgs/msg/Header with ``stamp`` (ns) and ``frame_id``."""
    time_cls = types.message_class("builtin_interfaces/msg/Time")
    header_cls = types.message_class("std_msgs/msg/Header")
    return header_cls(
        stamp=time_cls(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000), frame_id=frame_id
    )


def _field_dtype(
    msg: Any, names: tuple[str, ...], *, required: bool
) -> tuple[list[str], list[Any], list[int]]:
    """Names, numpy formats and offsets of the wanted fields that the cloud has."""
    by_name: dict[str, Any] = {}
    for f in msg.fields:
        by_name.setdefault(str(f.name), f)  # the first of duplicate names wins, as in sensor_msgs_py
    found: tuple[list[str], list[Any], list[int]] = ([], [], [])
    missing = [n for n in names if n not in by_name]
    if required and missing:
        present = ", ".join(by_name) or "none"
        msg_text = (
            f"PointCloud2 has no field {', '.join(repr(n) for n in missing)} (fields: {present}): "
            "publish x, y and z"
        )
        raise ValueError(msg_text)
    order: Literal["<", ">"] = ">" if msg.is_bigendian else "<"
    for name in names:
        field = by_name.get(name)
        if field is None:
            continue
        datatype, count = int(field.datatype), int(field.count)
        if datatype not in POINT_DATATYPES or count > 1:
            if not required:
                continue  # an odd optional field (intensity, time) is ignored, not fatal
            if datatype not in POINT_DATATYPES:
                msg_text = (
                    f"PointCloud2 field {name!r} has datatype {datatype}: use a PointField constant "
                    "1..8 (INT8..FLOAT64)"
                )
            else:
                msg_text = (
                    f"PointCloud2 field {name!r} has count {count}: x, y and z must be scalars (count 1)"
                )
            raise ValueError(msg_text)
        found[0].append(name)
        found[1].append(np.dtype(POINT_DATATYPES[datatype]).newbyteorder(order))
        found[2].append(int(field.offset))
    return found


def read_points(msg: Any, *, skip_nans: bool = True) -> CloudArrays:
    """The x, y, z (and intensity and per-point time, when present) of a PointCloud2.

    Args:
        msg: a ``rosbags`` sensor_msgs/msg/PointCloud2.
        skip_nans: drop points whose x, y or z is NaN or infinite (organized clouds mark missing
            returns that way).

    Raises:
        ValueError: a field is missing or malformed, or the layout (point_step, row_step, data
            size) does not fit the fields; the message names the bad value.
    """
    width, height = int(msg.width), int(msg.height)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    names, formats, offsets = _field_dtype(msg, ("x", "y", "z"), required=True)
    for extra in (("intensity",), TIME_FIELDS):
        more = _field_dtype(msg, extra, required=False)
        if more[0]:
            names.append(more[0][0])
            formats.append(more[1][0])
            offsets.append(more[2][0])
    total = width * height
    if total == 0:
        empty = np.zeros((0, 3), np.float32)
        return CloudArrays(xyz=empty, intensity=None, times=None, total=0)
    end = max(off + fmt.itemsize for off, fmt in zip(offsets, formats, strict=True))
    if point_step < end:
        msg_text = (
            f"PointCloud2 point_step {point_step} is smaller than its fields ({end} bytes): fix point_step"
        )
        raise ValueError(msg_text)
    row_bytes = width * point_step
    if row_step < row_bytes:
        msg_text = f"PointCloud2 row_step {row_step} is below width * point_step ({row_bytes}): fix row_step"
        raise ValueError(msg_text)
    data = np.asarray(msg.data, dtype=np.uint8).reshape(-1)
    needed = row_step * (height - 1) + row_bytes
    if data.size < needed:
        msg_text = (
            f"PointCloud2 data has {data.size} bytes, {width}x{height} points of {point_step} bytes "
            f"(row_step {row_step}) need {needed}: the message is truncated"
        )
        raise ValueError(msg_text)
    if row_step != row_bytes and height > 1:
        # Padded rows: cut each row to its points, then one contiguous copy for the view.
        rows = np.lib.stride_tricks.as_strided(data, shape=(height, row_bytes), strides=(row_step, 1))
        data = np.ascontiguousarray(rows).reshape(-1)
    layout: Any = {"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step}
    structured = np.dtype(layout)
    points = data[: total * point_step].view(structured)
    xyz = np.empty((total, 3), dtype=np.float32)
    for axis, name in enumerate(("x", "y", "z")):
        xyz[:, axis] = points[name]
    intensity = points["intensity"].astype(np.float32) if "intensity" in names else None
    time_name = next((n for n in names if n in TIME_FIELDS), None)
    times = points[time_name].astype(np.float64) if time_name else None
    if skip_nans:
        finite = np.isfinite(xyz).all(axis=1)
        if not finite.all():
            xyz = xyz[finite]
            intensity = intensity[finite] if intensity is not None else None
            times = times[finite] if times is not None else None
    return CloudArrays(xyz=xyz, intensity=intensity, times=times, total=total)


def make_cloud(
    points: npt.ArrayLike,
    *,
    types: MessageTypes,
    stamp: int,
    frame_id: str,
    intensity: npt.ArrayLike | None = None,
    times: npt.ArrayLike | None = None,
    point_step: int | None = None,
    big_endian: bool = False,
) -> Any:
    """An unorganized (height 1) PointCloud2 with FLOAT32 x, y, z [, intensity] [, time].

    Args:
        points: (N, 3) coordinates.
        types: where the message classes come from.
        stamp: header stamp in nanoseconds.
        frame_id: header frame.
        intensity: optional (N,) values, field ``intensity``.
        times: optional (N,) per-point times (seconds since the sweep began), field ``time``.
        point_step: bytes per point; larger than the packed fields leaves zero padding after them.
        big_endian: write big-endian values (``is_bigendian`` true).

    Raises:
        ValueError: the arrays' shapes disagree or ``point_step`` is too small.
    """
    xyz = np.asarray(points, dtype=np.float32)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        msg_text = f"points have shape {xyz.shape}: pass an (N, 3) array of x, y, z"
        raise ValueError(msg_text)
    count = xyz.shape[0]
    columns: list[tuple[str, npt.NDArray[np.float32]]] = [
        ("x", xyz[:, 0]),
        ("y", xyz[:, 1]),
        ("z", xyz[:, 2]),
    ]
    for name, values in (("intensity", intensity), ("time", times)):
        if values is None:
            continue
        array = np.asarray(values, dtype=np.float32).reshape(-1)
        if array.shape[0] != count:
            msg_text = f"{name} has {array.shape[0]} values for {count} points: pass one per point"
            raise ValueError(msg_text)
        columns.append((name, array))
    packed = 4 * len(columns)
    step = packed if point_step is None else int(point_step)
    if step < packed:
        msg_text = f"point_step {step} is smaller than the {packed} bytes of the fields: use >= {packed}"
        raise ValueError(msg_text)
    order: Literal["<", ">"] = ">" if big_endian else "<"
    layout: Any = {
        "names": [name for name, _ in columns],
        "formats": [np.dtype(np.float32).newbyteorder(order)] * len(columns),
        "offsets": [4 * i for i in range(len(columns))],
        "itemsize": step,
    }
    structured = np.dtype(layout)
    data = np.zeros(count * step, dtype=np.uint8)
    view = data.view(structured)
    for name, values in columns:
        view[name] = values
    field_cls = types.message_class("sensor_msgs/msg/PointField")
    cloud_cls = types.message_class(POINTCLOUD2)
    return cloud_cls(
        header=make_header(types, stamp=stamp, frame_id=frame_id),
        height=1,
        width=count,
        fields=[
            field_cls(name=name, offset=4 * i, datatype=_FLOAT32, count=1)
            for i, (name, _) in enumerate(columns)
        ],
        is_bigendian=big_endian,
        point_step=step,
        row_step=step * count,
        data=data,
        is_dense=bool(np.isfinite(xyz).all()),
    )
