"""The grasp workload's outside: the Workload seam, training options, benchmark requests, the
serving node's one-line error when there is no model."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fogros_dist.errors import ConfigError
from fogros_dist.ros.types import MessageTypes
from fogros_dist.workloads import get_workload
from fogros_dist.workloads.grasp import WORKLOAD, training_settings
from fogros_dist.workloads.grasp.geometry import Grasps
from fogros_dist.workloads.grasp.messages import (
    CAMERA_INFO,
    IMAGE,
    POSE_ARRAY,
    camera_from_info,
    depth_meters,
    grasp_reply_msgs,
    parse_pose_array,
    parse_quality,
)
from fogros_dist.workloads.grasp.scene import Camera


def test_the_registry_finds_the_grasp_workload() -> None:
    assert get_workload("grasp") is WORKLOAD
    assert WORKLOAD.executable == "grasp_planner"
    assert [t.name for t in WORKLOAD.topics_in] == ["/camera/camera_info", "/camera/depth"]
    assert [t.name for t in WORKLOAD.topics_out] == ["/grasps", "/grasps/quality"]
    assert WORKLOAD.reply_topic.type == POSE_ARRAY
    assert WORKLOAD.node_arguments(Path("/m")) == ("--ros-args", "-p", "model:=/m/grasp.pt")


def test_train_options_have_working_defaults_and_reject_bad_values() -> None:
    parser = argparse.ArgumentParser()
    WORKLOAD.add_train_arguments(parser)
    args = parser.parse_args(["--scenes", "10", "--epochs", "2", "--out", "/tmp/x.pt"])
    settings = training_settings(
        scenes=args.scenes,
        eval_scenes=args.eval_scenes,
        grasps_per_scene=args.grasps_per_scene,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
        plan_images=args.plan_images,
        threads=args.threads,
        out=args.out,
    )
    assert settings.data.scenes == 10
    assert settings.optim.epochs == 2
    assert settings.out == Path("/tmp/x.pt")
    assert settings.eval_every == 1  # held-out accuracy after every epoch
    assert settings.model.hidden == 64
    with pytest.raises(ConfigError, match=r"grasp training option --epochs 0 must be >= 1"):
        training_settings(
            scenes=1, eval_scenes=1, grasps_per_scene=1, epochs=0, batch_size=1,
            learning_rate=0.1, seed=0, plan_images=0, threads=0, out=None,
        )  # fmt: skip
    wide = parser.parse_args(["--hidden", "256", "--eval-every", "0"])
    settings = training_settings(
        scenes=1, eval_scenes=1, grasps_per_scene=1, epochs=1, batch_size=1, learning_rate=0.1, seed=0,
        plan_images=0, threads=0, out=None, hidden=wide.hidden, eval_every=wide.eval_every,
    )  # fmt: skip
    assert (settings.model.hidden, settings.eval_every) == (256, 0)
    for option, value, floor in (("hidden", 0, 1), ("eval_every", -1, 0)):
        flag = "--" + option.replace("_", "-")
        with pytest.raises(ConfigError, match=rf"grasp training option {flag} {value} must be >= {floor}"):
            training_settings(
                scenes=1, eval_scenes=1, grasps_per_scene=1, epochs=1, batch_size=1, learning_rate=0.1,
                seed=0, plan_images=0, threads=0, out=None, **{option: value},
            )  # fmt: skip


def test_bench_requests_are_deterministic_and_keyed_by_stamp() -> None:
    first = list(WORKLOAD.bench_requests(count=3, seed=4))
    again = list(WORKLOAD.bench_requests(count=3, seed=4))
    assert [r.key for r in first] == [r.key for r in again]
    assert [r.messages for r in first] == [r.messages for r in again]
    assert len({r.key for r in first}) == 3
    types = MessageTypes("jazzy")
    for request in first:
        (info_topic, info_cdr), (depth_topic, depth_cdr) = request.messages
        assert (info_topic.type, depth_topic.type) == (CAMERA_INFO, IMAGE)
        info = types.deserialize(CAMERA_INFO, info_cdr)
        image = types.deserialize(IMAGE, depth_cdr)
        stamp = int(image.header.stamp.sec) * 1_000_000_000 + int(image.header.stamp.nanosec)
        assert stamp == request.key
        assert depth_meters(image).shape == (int(info.height), int(info.width))
        assert camera_from_info(info).k == Camera().k


def test_replies_round_trip_through_cdr_and_reply_key() -> None:
    types = MessageTypes("jazzy")
    camera = Camera()
    header = types.message_class("std_msgs/msg/Header")(
        stamp=types.message_class("builtin_interfaces/msg/Time")(sec=12, nanosec=34), frame_id="cam"
    )
    grasps = Grasps(
        centers=np.array([[80.0, 60.0], [20.5, 30.25]]),
        angles=np.array([0.3, 2.9]),
        depths=np.array([0.55, 0.6]),
        widths=np.zeros(2),
    )
    poses, quality = grasp_reply_msgs(
        types, header=header, grasps=grasps, qualities=np.array([0.9, 0.4]), camera=camera
    )
    cdr = types.serialize(POSE_ARRAY, poses)
    assert WORKLOAD.reply_key(cdr) == 12_000_000_034
    back = parse_pose_array(types.deserialize(POSE_ARRAY, cdr), camera=camera)
    assert back.frame_id == "cam"
    assert back.grasps.centers == pytest.approx(grasps.centers)
    assert back.grasps.angles == pytest.approx(grasps.angles)
    assert back.grasps.depths == pytest.approx(grasps.depths)
    stamp, values = parse_quality(
        types.deserialize(
            "std_msgs/msg/Float32MultiArray", types.serialize("std_msgs/msg/Float32MultiArray", quality)
        )
    )
    assert stamp == 12_000_000_034
    assert values.tolist() == pytest.approx([0.9, 0.4])


def test_depth_encodings_are_converted_to_meters() -> None:
    from fogros_dist.workloads.grasp.messages import depth_image_msg

    types = MessageTypes("jazzy")
    header = types.message_class("std_msgs/msg/Header")(
        stamp=types.message_class("builtin_interfaces/msg/Time")(sec=0, nanosec=0), frame_id=""
    )
    depth = np.array([[0.5, 0.0], [0.7254, 1.0]], dtype=np.float32)
    meters = depth_meters(depth_image_msg(types, depth=depth, header=header, encoding="16UC1"))
    assert meters == pytest.approx(np.array([[0.5, 0.0], [0.725, 1.0]]), abs=1e-6)
    with pytest.raises(ValueError, match=r"holds no positive depth everywhere"):
        depth_meters(depth_image_msg(types, depth=np.zeros((2, 2)), header=header, encoding="16UC1"))


def test_node_without_a_model_fails_in_one_line(tmp_path: Path, ros_domain_id: int) -> None:
    missing = tmp_path / "none" / "grasp.pt"
    env = dict(os.environ, ROS_DOMAIN_ID=str(ros_domain_id), FOGROS_DIST_GRAPH="dds")
    done = subprocess.run(
        [sys.executable, "-m", "fogros_dist.workloads.grasp.node", "--ros-args", "-p", f"model:={missing}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert errors == [
        f"grasp_planner: error: grasp model {missing} does not exist: train one with "
        "`fogros-dist train grasp` (or pass -p model:=PATH)"
    ]
    assert "Traceback" not in done.stderr
