"""Camera streams across the bridge over an emulated WAN: 50 Mbit/s, 40 ms round trip.

The robot and the cloud are two network namespaces joined by bench/wan_link.py (``tc tbf`` for the
rate; a userspace relay between two TUN devices adds 20 ms each way, as kernel netem is missing).
In the robot namespace a DDS app (fogros_dist.ros.dds.DdsGraph) publishes

  /bench/rgb    sensor_msgs/Image 640x480 rgb8, textured and noisy (sensor noise sigma 2.5)
  /bench/depth  sensor_msgs/Image 640x480 16UC1 in mm, the grasp workload's noisy depth scenes

into the robot bridge (``python -m fogros_dist.net.bridge_main``), across the link to the cloud
bridge, to a cloud node that answers every frame with its header (std_msgs/Header on
/bench/echo) back across the link. Each stream runs uncompressed (codec ``none``) and coded
(``--rgb-codec``, ``--depth-codec``) in the same run, through the same link.

Phases per codec: both streams together (RGB 30 Hz + depth 10 Hz, 60 s; ``--quick``: 10 s),
then each stream alone, offered at ``--offer-hz`` to find the rate it sustains. Measured: frames
delivered per second, one-way latency (header stamp to the cloud node's receipt; both namespaces
share the host clock), the reply's round trip, IP bytes on the link per frame, PSNR of RGB frames
and bit-exactness of depth frames (against the originals), the bridges' CPU time per frame, and
the robot bridge's backlog each second.

Usage: sudo .venv/bin/python bench/bridge_wan.py [--quick] [--rgb-codec jpeg:90] [--depth-codec zstd]
Writes bench/results/bridge_wan.json (bridge_wan_quick.json with --quick) and, for a full run,
the table in BENCHMARKS.md between ``<!-- bridge_wan:begin -->`` / ``<!-- bridge_wan:end -->``.
Every process is stopped by PID and the namespaces are removed, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import math
import os
import platform
import random
import signal
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from benchmarks_md import write_table  # noqa: E402
from bridge_latency import _Proc, _processes, _summary  # noqa: E402
from wan_link import DEFAULT_CONGESTION_CONTROL, WanLink, measure_link, wan_link, wan_unavailable  # noqa: E402

RESULTS = BENCH / "results" / "bridge_wan.json"
QUICK_RESULTS = BENCH / "results" / "bridge_wan_quick.json"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"

IMAGE, HEADER = "sensor_msgs/msg/Image", "std_msgs/msg/Header"
WIDTH, HEIGHT = 640, 480
STREAMS = {"rgb": "/bench/rgb", "depth": "/bench/depth"}
ECHO = "/bench/echo"
TARGET_HZ = {"rgb": 30.0, "depth": 10.0}
PSNR_TARGET_DB = 38.0
P99_SLACK_MS = 30.0
PORT = 7447
RGB_FRAMES, DEPTH_FRAMES = 30, 10
# Every frame's header: stamp (send time) and frame_id "<r|d><9-digit sequence>"; the sequence
# starts at phase * PHASE_BASE, so a late frame is never counted in the next phase.
PHASE_BASE = 10_000_000
_STAMP = struct.Struct("<iI")
_STAMP_AT, _ID_AT, _ID_LEN = 4, 16, 10
# Every QUALITY_EVERY-th frame the cloud node receives is kept and compared with its original.
QUALITY_EVERY = 10


# -- frames --------------------------------------------------------------------------------------


def rgb_frames(count: int, seed: int = 1) -> Any:
    """``count`` 480x640x3 uint8 frames: multi-scale texture, shapes with edges, a light gradient,
    a slow pan between frames, and fresh sensor noise (sigma 2.5) in each."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    pad = 4 * count
    h, w = HEIGHT + pad, WIDTH + pad
    texture = np.zeros((h, w, 3))
    for scale, weight in ((4, 25.0), (16, 45.0), (64, 70.0), (256, 60.0)):
        coarse = rng.random((h // scale + 2, w // scale + 2, 3)).astype(np.float32)
        channels = [
            np.asarray(Image.fromarray(coarse[..., c]).resize((w, h), Image.Resampling.BICUBIC))
            for c in range(3)
        ]
        texture += weight * (np.stack(channels, axis=-1) - 0.5)
    texture += 110 + np.linspace(-30, 30, w)[None, :, None]
    canvas = Image.fromarray(np.clip(texture, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(25):
        x, y = int(rng.integers(0, w - 60)), int(rng.integers(0, h - 60))
        box = (x, y, x + int(rng.integers(20, 200)), y + int(rng.integers(20, 150)))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)(box, fill=colour)
    base = np.asarray(canvas).astype(np.float32)
    frames = np.empty((count, HEIGHT, WIDTH, 3), np.uint8)
    for i in range(count):
        window = base[2 * i : 2 * i + HEIGHT, 3 * i : 3 * i + WIDTH]
        noisy = window + rng.normal(0.0, 2.5, window.shape)
        frames[i] = np.clip(np.round(noisy), 0, 255).astype(np.uint8)
    return frames


def depth_frames(count: int) -> Any:
    """``count`` 480x640 uint16 depth images in mm: grasp scenes (fogros_dist.workloads.grasp)
    rendered at 640x480 with the workload's sensor noise and dropouts."""
    import numpy as np

    from fogros_dist.workloads.grasp.scene import Camera, NoiseModel, generate_scene, render_depth

    camera = Camera(width=WIDTH, height=HEIGHT, fx=800.0, fy=800.0)  # the workload's 160x120, x4
    frames = np.empty((count, HEIGHT, WIDTH), np.uint16)
    for i in range(count):
        depth = render_depth(generate_scene(seed=i, camera=camera), noise=NoiseModel(), seed=i).depth
        frames[i] = np.round(depth * 1000.0).astype(np.uint16)
    return frames


def _image_templates(frames: Any, encoding: str, types: Any) -> list[bytearray]:
    import numpy as np

    image = types.message_class(IMAGE)
    header, stamp = types.message_class(HEADER), types.message_class("builtin_interfaces/msg/Time")
    out = []
    for frame in frames:
        msg = image(
            header=header(stamp=stamp(sec=0, nanosec=0), frame_id="x" * _ID_LEN),
            height=HEIGHT,
            width=WIDTH,
            encoding=encoding,
            is_bigendian=0,
            step=WIDTH * frame.dtype.itemsize * (3 if frame.ndim == 3 else 1),
            data=np.frombuffer(frame.tobytes(), dtype=np.uint8),
        )
        out.append(bytearray(types.serialize(IMAGE, msg)))
    _check_layout(out[0], IMAGE, types)
    return out


def _check_layout(buf: bytearray, type_name: str, types: Any) -> None:
    probe = bytearray(buf)
    _STAMP.pack_into(probe, _STAMP_AT, 12, 34)
    probe[_ID_AT : _ID_AT + _ID_LEN] = b"r000000042"
    msg: Any = types.deserialize(type_name, bytes(probe))
    header = msg if type_name == HEADER else msg.header
    if (header.stamp.sec, header.stamp.nanosec, header.frame_id) != (12, 34, "r000000042"):
        raise RuntimeError(f"{type_name} CDR layout is not the one this benchmark patches")


def _stamp_into(buf: bytearray, tag: bytes, seq: int) -> bytes:
    now = time.time_ns()
    _STAMP.pack_into(buf, _STAMP_AT, now // 1_000_000_000, now % 1_000_000_000)
    buf[_ID_AT : _ID_AT + _ID_LEN] = tag + b"%09d" % seq
    return bytes(buf)


def _read_stamp(cdr: bytes) -> tuple[str, int, int]:
    """(stream, sequence, send time ns) from the header at the start of an Image or Header."""
    sec, nanosec = _STAMP.unpack_from(cdr, _STAMP_AT)
    tag = cdr[_ID_AT : _ID_AT + 1]
    seq = int(cdr[_ID_AT + 1 : _ID_AT + _ID_LEN])
    return ("rgb" if tag == b"r" else "depth"), seq, sec * 1_000_000_000 + nanosec


# -- the robot app (robot namespace) -------------------------------------------------------------


def _topic(name: str, type_name: str, codec: str, depth: int) -> Any:
    from fogros_dist.spec import QosSpec, TopicSpec

    return TopicSpec(name=name, type=type_name, qos=QosSpec(depth=depth), codec=codec)


def run_robot_app(args: argparse.Namespace) -> int:
    """Publish both streams on command (``run``/``probe`` lines on stdin), time the echoes."""
    import numpy as np

    from fogros_dist.ros.dds import DdsGraph

    frames = np.load(args.frames)
    graph = DdsGraph(args.domain)
    templates = {
        "rgb": _image_templates(frames["rgb"], "rgb8", graph.types),
        "depth": _image_templates(frames["depth"], "16UC1", graph.types),
    }
    publishers = {s: graph.publisher(_topic(t, IMAGE, "none", 5)) for s, t in STREAMS.items()}
    lock = threading.Lock()
    echoes: dict[str, list[tuple[int, int]]] = {"rgb": [], "depth": []}  # (seq, round trip ns)
    last_echo = [time.monotonic()]

    def on_echo(cdr: bytes) -> None:
        received = time.time_ns()
        stream, seq, sent = _read_stamp(cdr)
        with lock:
            echoes[stream].append((seq, received - sent))
            last_echo[0] = time.monotonic()

    graph.subscribe(_topic(ECHO, HEADER, "none", 50), on_echo)
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "stop":
            break
        if words[0] == "probe":
            # Until both streams' echoes come back, the path is not up end to end.
            seq = 0
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                with lock:
                    if echoes["rgb"] and echoes["depth"]:
                        break
                for stream, tag in (("rgb", b"r"), ("depth", b"d")):
                    publishers[stream].publish(_stamp_into(templates[stream][0], tag, seq))
                seq += 1
                time.sleep(0.5)
            with lock:
                up = bool(echoes["rgb"] and echoes["depth"])
                echoes["rgb"].clear()
                echoes["depth"].clear()
            print("path up" if up else "path down", flush=True)
            continue
        phase, rgb_hz, depth_hz, seconds = int(words[1]), float(words[2]), float(words[3]), float(words[4])
        result = _publish_phase(
            phase=phase,
            rates={"rgb": rgb_hz, "depth": depth_hz},
            seconds=seconds,
            templates=templates,
            publishers=publishers,
            echoes=echoes,
            lock=lock,
            last_echo=last_echo,
        )
        print("result " + json.dumps(result), flush=True)
    graph.close()
    return 0


def _publish_phase(
    *,
    phase: int,
    rates: dict[str, float],
    seconds: float,
    templates: dict[str, list[bytearray]],
    publishers: dict[str, Any],
    echoes: dict[str, list[tuple[int, int]]],
    lock: threading.Lock,
    last_echo: list[float],
) -> dict[str, Any]:
    base = phase * PHASE_BASE
    sent = {"rgb": 0, "depth": 0}
    start_ns, start = time.time_ns(), time.perf_counter()
    due = [(start, s) for s, hz in rates.items() if hz > 0]
    heapq.heapify(due)
    late = 0
    while due:
        at, stream = heapq.heappop(due)
        if at >= start + seconds:
            continue
        wait = at - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        elif wait < -0.5 / rates[stream]:
            late += 1  # the publisher itself fell behind (a busy CPU): the offered rate is lower
        frames = templates[stream]
        n = sent[stream]
        publishers[stream].publish(_stamp_into(frames[n % len(frames)], stream[0].encode(), base + n))
        sent[stream] = n + 1
        heapq.heappush(due, (at + 1.0 / rates[stream], stream))
    end_ns = time.time_ns()
    # Drain: wait for the echoes of what is still in flight (or in a backlog), until they stop.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with lock:
            got = {s: sum(1 for q, _ in echoes[s] if q >= base) for s in sent}
            quiet = time.monotonic() - last_echo[0]
        if all(got[s] >= sent[s] for s in sent) or quiet > 4.0:
            break
        time.sleep(0.2)
    with lock:
        mine = {s: [rtt for q, rtt in echoes[s] if q >= base] for s in sent}
        for held in echoes.values():
            held.clear()
    return {
        "phase": phase,
        "start_ns": start_ns,
        "end_ns": end_ns,
        "drained_ns": time.time_ns(),
        "sent": sent,
        "late_sends": late,
        "rtt_ns": mine,
    }


# -- the cloud node (cloud namespace) ------------------------------------------------------------


def run_cloud_node(args: argparse.Namespace) -> int:
    """Answer every frame with its header; record arrivals; on ``report <phase>``, print them."""
    import numpy as np

    from fogros_dist.ros.dds import DdsGraph

    frames = np.load(args.frames)
    originals = {"rgb": frames["rgb"], "depth": frames["depth"]}
    graph = DdsGraph(args.domain)
    echo_template = bytearray(_header_template(graph.types))
    echo = graph.publisher(_topic(ECHO, HEADER, "none", 50))
    lock = threading.Lock()
    arrivals: dict[str, list[tuple[int, int, int]]] = {"rgb": [], "depth": []}  # (seq, at, one-way)
    kept: dict[str, list[tuple[int, bytes]]] = {"rgb": [], "depth": []}
    echo_lock = threading.Lock()

    def on_frame(cdr: bytes) -> None:
        received = time.time_ns()
        stream, seq, sent = _read_stamp(cdr)
        with echo_lock:  # two streams' callbacks share the one template
            echo_template[_STAMP_AT : _ID_AT + _ID_LEN] = cdr[_STAMP_AT : _ID_AT + _ID_LEN]
            reply = bytes(echo_template)
        echo.publish(reply)
        with lock:
            arrivals[stream].append((seq, received, received - sent))
            if seq % QUALITY_EVERY == 0:
                kept[stream].append((seq, cdr))

    for topic in STREAMS.values():
        graph.subscribe(_topic(topic, IMAGE, "none", 5), on_frame)
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "stop":
            break
        base = int(words[1]) * PHASE_BASE
        with lock:
            mine = {s: [a for a in arrivals[s] if a[0] >= base] for s in arrivals}
            samples = {s: [k for k in kept[s] if k[0] >= base] for s in kept}
            for got in (*arrivals.values(), *kept.values()):
                got.clear()
        quality = {s: _quality(s, samples[s], originals[s], graph.types, base) for s in samples}
        print("report " + json.dumps({"arrivals": mine, "quality": quality}), flush=True)
    graph.close()
    return 0


def _header_template(types: Any) -> bytes:
    header, stamp = types.message_class(HEADER), types.message_class("builtin_interfaces/msg/Time")
    buf = bytearray(types.serialize(HEADER, header(stamp=stamp(sec=0, nanosec=0), frame_id="x" * _ID_LEN)))
    _check_layout(buf, HEADER, types)
    return bytes(buf)


def _quality(
    stream: str, samples: list[tuple[int, bytes]], originals: Any, types: Any, base: int
) -> dict[str, Any]:
    """RGB: PSNR (dB) of each kept frame against its original; depth: whether each is bit-exact."""
    import numpy as np

    psnrs, exact, wrong_shape = [], 0, 0
    for seq, cdr in samples:
        msg: Any = types.deserialize(IMAGE, cdr)
        original = originals[(seq - base) % len(originals)]
        data = np.asarray(msg.data, dtype=np.uint8)
        if (msg.height, msg.width, data.size) != (HEIGHT, WIDTH, original.nbytes):
            wrong_shape += 1
            continue
        got = data.view(original.dtype).reshape(original.shape)
        if np.array_equal(got, original):
            exact += 1
        if stream == "rgb":
            mse = float(np.mean((got.astype(np.float64) - original.astype(np.float64)) ** 2))
            psnrs.append(math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse))
    out: dict[str, Any] = {"frames": len(samples), "bit_exact": exact, "wrong_shape": wrong_shape}
    if psnrs:
        finite = [p for p in psnrs if math.isfinite(p)]
        out["psnr_min_db"] = round(min(finite), 2) if finite else None  # None: every frame exact
        out["psnr_mean_db"] = round(statistics.fmean(finite), 2) if finite else None
    return out


# -- orchestration -------------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _bridge_spec(side: str, link: WanLink, codecs: dict[str, str], workdir: Path, domain: int) -> Path:
    from fogros_dist.spec import BridgeRunSpec, BridgeSpec, to_json

    endpoint = f"tcp/{link.cloud_address}:{PORT}"
    images = tuple(_topic(STREAMS[s], IMAGE, codecs[s], 5) for s in STREAMS)
    echo = (_topic(ECHO, HEADER, "none", 50),)
    robot = side == "robot"
    spec = BridgeRunSpec(
        deployment="benchwan",
        side="robot" if robot else "machine",
        machine="robot" if robot else "cloud",
        listen=() if robot else (endpoint,),
        connect=(endpoint,) if robot else (),
        outbound=images if robot else echo,
        inbound=echo if robot else images,
        domain_id=domain,
        graph="dds",
        stats_path=str(workdir / f"{side}-stats.json"),
        # Plain TCP: this measures the codecs and the link; bench/bridge_latency.py shows what mTLS adds.
        bridge=BridgeSpec(protocol="tcp"),
    )
    path = workdir / f"bridge-{side}.json"
    path.write_text(to_json(spec))
    return path


class _Backlog:
    """Samples the robot bridge's backlog per topic from its stats file, once a second."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _Backlog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        start = time.monotonic()
        while not self._stop.wait(1.0):
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(self.path.read_text())
                backlog = {
                    t["topic"]: int(t["backlog"]) for t in data["topics"] if t["direction"] == "outbound"
                }
                self.samples.append((round(time.monotonic() - start, 1), backlog))


def _run_codec(
    label: str, codecs: dict[str, str], link: WanLink, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    """Every phase of one codec setting, each with fresh bridges and apps: a phase that saturates
    the link (or breaks it) must not leave its backlog or its damage to the next."""
    together = (TARGET_HZ["rgb"], TARGET_HZ["depth"])
    cc = args.tcp_cc
    plan: list[tuple[str, int, tuple[float, float], float, str]] = [
        ("together", 2, together, args.seconds, cc),
        ("rgb_alone", 3, (args.offer_hz, 0.0), args.alone_seconds, cc),
        ("depth_alone", 4, (0.0, args.offer_hz), args.alone_seconds, cc),
    ]
    if label == "coded":
        # Where the together tail comes from: RGB without depth frames ahead of it in the link's
        # one queue, and both streams again under BBR (see bench/wan_link.py).
        plan.append(("rgb_alone_at_target", 5, (TARGET_HZ["rgb"], 0.0), args.seconds / 2, cc))
        allowed = Path("/proc/sys/net/ipv4/tcp_allowed_congestion_control").read_text().split()
        if args.compare_cc and args.compare_cc not in allowed:
            print(
                f"--compare-cc {args.compare_cc}: not allowed here ({' '.join(allowed)}), skipped",
                file=sys.stderr,
            )
        elif args.compare_cc and args.compare_cc != cc:
            plan.append(("together_compare_cc", 6, together, args.seconds / 2, args.compare_cc))
    out: dict[str, Any] = {"codecs": codecs, "phases": {}}
    for name, number, rates, seconds, congestion in plan:
        print(
            f"{label}: {name}, RGB {rates[0]:g} Hz + depth {rates[1]:g} Hz for {seconds:g} s "
            f"(TCP {congestion})",
            file=sys.stderr,
        )
        link.set_congestion_control(congestion)
        out["phases"][name] = _run_phase(
            number,
            rates,
            seconds,
            codecs=codecs,
            link=link,
            args=args,
            workdir=workdir,
            warm=name == "together",
        )
        out["phases"][name]["congestion_control"] = congestion
    return out


def _run_phase(
    number: int,
    rates: tuple[float, float],
    seconds: float,
    *,
    codecs: dict[str, str],
    link: WanLink,
    args: argparse.Namespace,
    workdir: Path,
    warm: bool,
) -> dict[str, Any]:
    me = str(Path(__file__).resolve())
    py = sys.executable
    common = ["--frames", str(workdir / "frames.npz"), "--domain", str(args.domain)]
    for side in ("robot", "cloud"):
        (workdir / f"{side}-stats.json").unlink(missing_ok=True)
    with _processes() as start:
        cloud = start("cloud node", link.in_ns([py, me, "--role", "cloud", *common], side="cloud"))
        cloud.expect("ready", 60)
        bridges: dict[str, _Proc] = {}
        for side in ("cloud", "robot"):
            spec = _bridge_spec(side, link, codecs, workdir, args.domain)
            argv = [py, "-m", "fogros_dist.net.bridge_main", "--spec", str(spec), "--peer-timeout", "60"]
            bridges[side] = start(f"{side} bridge", link.in_ns(argv, side=side))
            bridges[side].expect("bridge ready", 90)
        robot = start("robot app", link.in_ns([py, me, "--role", "robot", *common], side="robot"))
        robot.expect("ready", 60)
        robot.say("probe")
        robot.expect("path up", 100)
        if warm:  # every cache, socket buffer and TCP window settles first (not measured)
            robot.say(f"run 1 {rates[0]} {rates[1]} 3")
            _result_line(robot, "result", 90)
            cloud.say("report 1")
            _result_line(cloud, "report", 60)
        pids = {side: proc.popen.pid for side, proc in bridges.items()}
        cpu0 = {s: _cpu_seconds(p) for s, p in pids.items()}
        wire0 = link.wire_bytes()
        backlog = _Backlog(workdir / "robot-stats.json")
        with backlog:
            robot.say(f"run {number} {rates[0]} {rates[1]} {seconds}")
            line = _result_line(robot, "result", seconds + 90)
        cpu = {s: round(_cpu_seconds(p) - cpu0[s], 3) for s, p in pids.items()}
        wire1 = link.wire_bytes()
        cloud.say(f"report {number}")
        report = json.loads(_result_line(cloud, "report", 120))
        time.sleep(1.2)  # one more stats write from each bridge
        disconnects = {side: _disconnects(workdir / f"{side}-stats.json") for side in ("robot", "cloud")}
        robot.say("stop")
        cloud.say("stop")
    summary = _phase_summary(
        result_json=line,
        report=report,
        cpu=cpu,
        wire={k: wire1[k] - wire0[k] for k in wire0},
        backlog=backlog.samples,
        rates=rates,
    )
    summary["link_disconnects"] = disconnects
    summary["bridge_to_bridge_ms"] = _bridge_latency(workdir / "cloud-stats.json")
    return summary


def _bridge_latency(path: Path) -> dict[str, Any]:
    """The cloud bridge's own one-way latency per stream (robot bridge's put -> cloud bridge's
    receipt, warm-up included): what of the end-to-end figure the link and bridges account for."""
    try:
        topics = json.loads(path.read_text())["topics"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    names = {topic: stream for stream, topic in STREAMS.items()}
    return {
        names[t["topic"]]: t.get("latency_ms")
        for t in topics
        if t.get("direction") == "inbound" and t.get("topic") in names
    }


def _disconnects(path: Path) -> int | None:
    """How often a bridge saw its peer's transport close (its stats file); None if unreadable."""
    try:
        return int(json.loads(path.read_text())["link"]["disconnects"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _result_line(proc: _Proc, word: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"{proc.name}: no {word!r} within {timeout:g} s")
        try:
            line = proc.lines.get(timeout=min(left, 0.5))
        except Exception:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited {proc.popen.returncode} before {word!r}") from None
            continue
        if line.startswith(word + " "):
            return line[len(word) + 1 :]


def _phase_summary(
    *,
    result_json: str,
    report: dict[str, Any],
    cpu: dict[str, float],
    wire: dict[str, int],
    backlog: list[tuple[float, dict[str, int]]],
    rates: tuple[float, float],
) -> dict[str, Any]:
    result = json.loads(result_json)
    seconds = (result["end_ns"] - result["start_ns"]) / 1e9
    settle_ns = result["start_ns"] + int(min(2.0, seconds / 4) * 1e9)  # past the first queue's fill
    streams: dict[str, Any] = {}
    total_received = 0
    for i, stream in enumerate(("rgb", "depth")):
        sent = result["sent"][stream]
        if not sent:
            continue
        arrivals = report["arrivals"][stream]
        total_received += len(arrivals)
        # Delivered rate: frames that reached the cloud node while the robot still published,
        # after the first seconds (a saturated link's backlog fills there).
        during = [a for a in arrivals if settle_ns <= a[1] <= result["end_ns"]]
        window = (result["end_ns"] - settle_ns) / 1e9
        oneway = [a[2] for a in arrivals]
        tenth = max(1, len(oneway) // 6)
        streams[stream] = {
            "offered_hz": rates[i],
            "sent": sent,
            "sent_hz": round(sent / seconds, 2),
            "received": len(arrivals),
            "delivered_hz": round(len(during) / window, 2) if window > 0 else None,
            "echoed": len(result["rtt_ns"][stream]),
            "one_way": _summary(oneway, sent),
            # First and last sixth of the run: a growing backlog shows as a growing latency.
            "one_way_first_median_ms": round(statistics.median(oneway[:tenth]) / 1e6, 2) if oneway else None,
            "one_way_last_median_ms": round(statistics.median(oneway[-tenth:]) / 1e6, 2) if oneway else None,
            "round_trip": _summary(result["rtt_ns"][stream], sent),
            # Where the tail is: the slowest frames' arrival (s into the phase) and one-way ms.
            "slowest": [
                (round((a[1] - result["start_ns"]) / 1e9, 2), round(a[2] / 1e6, 1))
                for a in sorted(arrivals, key=lambda a: -a[2])[:8]
            ],
            "quality": report["quality"][stream],
        }
    frames = max(1, total_received)
    return {
        "seconds": round(seconds, 2),
        "late_sends": result["late_sends"],
        "streams": streams,
        "wire_bytes": wire,
        "wire_bytes_per_frame": round(wire["robot_to_cloud"] / frames),
        # What the delivered frames take of the link: delivered rate x bytes per frame.
        "link_mbit_s": round(
            sum(s["delivered_hz"] or 0 for s in streams.values()) * wire["robot_to_cloud"] / frames * 8 / 1e6,
            2,
        ),
        "bridge_cpu_s": cpu,
        "cpu_ms_per_frame": {s: round(v * 1000 / frames, 2) for s, v in cpu.items()},
        # While the robot published (the drain after it empties the backlog by design).
        "backlog": [b for b in backlog if b[0] <= seconds],
    }


# -- the report ----------------------------------------------------------------------------------


def _verdicts(results: dict[str, Any], link: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, for each codec run: met or not, with the figure that decides it."""
    bound = link["tcp_rtt_median_ms"] / 2 + P99_SLACK_MS
    out: dict[str, Any] = {}
    for label, run in results.items():
        together = run["phases"]["together"]
        streams = together["streams"]
        sustained = all(
            s["received"] >= 0.99 * s["sent"] and s["sent_hz"] >= 0.97 * TARGET_HZ[name]
            for name, s in streams.items()
        )
        peaks = [max((b.get(STREAMS[n], 0) for _, b in together["backlog"]), default=0) for n in STREAMS]
        tail = together["backlog"][-max(1, len(together["backlog"]) // 4) :]
        growing = any(b.get(STREAMS[n], 0) > 2 for _, b in tail for n in STREAMS) or any(
            (s["one_way_last_median_ms"] or 0) > (s["one_way_first_median_ms"] or 0) + 20
            for s in streams.values()
        )
        p99 = {n: s["one_way"]["p99_ms"] for n, s in streams.items()}
        psnr = streams["rgb"]["quality"].get("psnr_min_db")
        depth_q = streams["depth"]["quality"]
        out[label] = {
            "together_sustained_no_backlog_growth": bool(sustained and not growing and not _drops(together)),
            "backlog_peak": dict(zip(STREAMS, peaks, strict=True)),
            "p99_bound_ms": round(bound, 2),
            "p99_within_bound": {n: (v is not None and v <= bound) for n, v in p99.items()},
            # What the link alone takes for one frame on an idle link: half the round trip plus
            # the frame's bytes at the measured rate (the alone phase's bytes on the wire).
            "one_way_floor_ms": {
                n: round(
                    link["tcp_rtt_median_ms"] / 2
                    + run["phases"][f"{n}_alone"]["wire_bytes_per_frame"]
                    * 8
                    / (link["tcp_rate_up_mbit_s"] * 1e3),
                    1,
                )
                for n in STREAMS
            },
            "rgb_psnr_min_db": psnr,
            # None: every kept frame came through bit-exact (an infinite PSNR).
            "rgb_psnr_met": (psnr is None and streams["rgb"]["quality"]["frames"] > 0)
            or (psnr or 0) >= PSNR_TARGET_DB,
            "depth_bit_exact": depth_q["frames"] > 0 and depth_q["bit_exact"] == depth_q["frames"],
            # RGB waits behind whatever depth frame is on the link: the floor plus one depth frame.
            "rgb_behind_depth_floor_ms": round(
                link["tcp_rtt_median_ms"] / 2
                + (
                    run["phases"]["rgb_alone"]["wire_bytes_per_frame"]
                    + run["phases"]["depth_alone"]["wire_bytes_per_frame"]
                )
                * 8
                / (link["tcp_rate_up_mbit_s"] * 1e3),
                1,
            ),
            "rgb_alone_hz": run["phases"]["rgb_alone"]["streams"]["rgb"]["delivered_hz"],
            "depth_alone_hz": run["phases"]["depth_alone"]["streams"]["depth"]["delivered_hz"],
        }
    return out


def _drops(phase: dict[str, Any]) -> int:
    """Times the bridges' link closed during a phase (the larger of the two sides' counts)."""
    return (
        max((n or 0) for n in phase.get("link_disconnects", {}).values())
        if phase.get("link_disconnects")
        else 0
    )


def _sustained(stream: dict[str, Any]) -> str:
    """The delivered rate; when it is all that was offered, the stream could go faster still."""
    delivered, offered = stream["delivered_hz"], stream["offered_hz"]
    if delivered is not None and delivered >= 0.97 * offered:
        return f">= {delivered} (all offered)"
    return str(delivered)


def _markdown(data: dict[str, Any]) -> str:
    link, meta, verdicts = data["link"], data["meta"], data["verdicts"]
    yes = {True: "met", False: "**not met**"}
    lines = [
        f"Link: {link['how']}. Measured through it: TCP round trip median {link['tcp_rtt_median_ms']} ms "
        f"(p99 {link['tcp_rtt_p99_ms']}), TCP payload {link['tcp_rate_up_mbit_s']} Mbit/s robot -> cloud, "
        f"{link['tcp_rate_down_mbit_s']} back. {meta['cpus']} CPUs shared by both ends, the relay and "
        f"the apps; run took {meta['duration_s']:g} s.",
        "",
        f"Both streams together for {meta['seconds']:g} s (RGB 640x480 rgb8 at 30 Hz, depth 640x480 16UC1 at "
        "10 Hz), robot DDS -> robot bridge -> link -> cloud bridge -> cloud node, which echoes each "
        "header back:",
        "",
        "| codec | stream | sent Hz | delivered Hz | one-way median / p99 ms | reply RTT median / p99 ms "
        "| quality | backlog peak | link drops |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for label, run in data["results"].items():
        together = run["phases"]["together"]
        for name, s in together["streams"].items():
            q = s["quality"]
            if name == "rgb":
                quality = "exact" if q.get("psnr_min_db") is None else f"PSNR min {q['psnr_min_db']} dB"
            else:
                quality = f"bit-exact {q['bit_exact']}/{q['frames']}"
            lines.append(
                f"| {run['codecs'][name]} | {name} | {s['sent_hz']} | {s['delivered_hz']} | "
                f"{s['one_way']['median_ms']} / {s['one_way']['p99_ms']} | "
                f"{s['round_trip']['median_ms']} / {s['round_trip']['p99_ms']} | {quality} | "
                f"{verdicts[label]['backlog_peak'][name]} | {_drops(together)} |"
            )
    lines += [
        "",
        f"Each stream alone, offered at {meta['offer_hz']:g} Hz: the rate it sustains (frames delivered "
        "per second once the link is saturated), IP bytes on the link per frame, and the bridges' CPU "
        "time per delivered frame (encode on the robot, decode on the cloud, plus all else a bridge does):",
        "",
        "| codec | stream | sustained Hz | bytes on wire / frame | link Mbit/s | robot bridge CPU ms/frame "
        "| cloud bridge CPU ms/frame | link drops |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for _label, run in data["results"].items():
        for name in STREAMS:
            ph = run["phases"][f"{name}_alone"]
            s = ph["streams"][name]
            lines.append(
                f"| {run['codecs'][name]} | {name} | {_sustained(s)} | {ph['wire_bytes_per_frame']:,} | "
                f"{ph['link_mbit_s']} | {ph['cpu_ms_per_frame']['robot']} | "
                f"{ph['cpu_ms_per_frame']['cloud']} | {_drops(ph)} |"
            )
    coded = data["results"].get("coded", {}).get("phases", {})
    tail_rows = [
        ("together", "both streams"),
        ("rgb_alone_at_target", "RGB alone at 30 Hz"),
        ("together_compare_cc", "both streams"),
    ]
    if any(name in coded for name, _ in tail_rows[1:]):
        lines += [
            "",
            "Where the coded run's tail comes from: the same streams with no depth frame ahead of RGB "
            "on the link, and under another TCP congestion control:",
            "",
            "| phase | TCP | stream | one-way median / p99 / max ms | slowest (s into the phase, ms) |",
            "|---|---|---|---:|---|",
        ]
        for name, what in tail_rows:
            ph = coded.get(name)
            if ph is None:
                continue
            for stream, s in ph["streams"].items():
                ow = s["one_way"]
                slow = ", ".join(f"{at:g} s {ms:g}" for at, ms in s["slowest"][:3])
                lines.append(
                    f"| {what} | {ph.get('congestion_control', '?')} | {stream} | "
                    f"{ow['median_ms']} / {ow['p99_ms']} / {ow['max_ms']} | {slow} |"
                )
    lines += ["", "Targets (issue 9):", ""]
    for label, v in verdicts.items():
        codecs = data["results"][label]["codecs"]
        lines.append(
            f"- {codecs['rgb']} + {codecs['depth']}: RGB 30 Hz + depth 10 Hz sustained, no backlog growth: "
            f"{yes[v['together_sustained_no_backlog_growth']]}; p99 one-way <= RTT/2 + 30 ms "
            f"({v['p99_bound_ms']} ms): RGB {yes[v['p99_within_bound'].get('rgb', False)]}, depth "
            f"{yes[v['p99_within_bound'].get('depth', False)]} (the link's own floor for one frame, RTT/2 + "
            f"its bytes at the measured rate: RGB {v['one_way_floor_ms']['rgb']} ms, depth "
            f"{v['one_way_floor_ms']['depth']} ms; RGB behind one depth frame: "
            f"{v['rgb_behind_depth_floor_ms']} ms); RGB PSNR >= {PSNR_TARGET_DB:g} dB: "
            f"{yes[bool(v['rgb_psnr_met'])]}; depth bit-exact: {yes[v['depth_bit_exact']]}; alone: RGB "
            f"{v['rgb_alone_hz']} Hz, depth {v['depth_alone_hz']} Hz."
        )
    return "\n".join(lines)


def _write_benchmarks_md(table: str) -> None:
    intro = (
        "\n\n## Camera streams over a WAN\n\n"
        "`sudo .venv/bin/python bench/bridge_wan.py` (about 5 minutes; `--quick` for a 10 s try) sends\n"
        "640x480 RGB and depth from the robot's DDS graph through both bridges to a cloud node and its\n"
        "reply back, over two network namespaces joined by an emulated 50 Mbit/s, 40 ms link\n"
        "(bench/wan_link.py), uncompressed and coded in the same run. Raw JSON:\n"
        "`bench/results/bridge_wan.json`.\n\n"
    )
    write_table(BENCHMARKS_MD, "bridge_wan", table, intro)


def orchestrate(args: argparse.Namespace) -> int:
    import numpy as np

    from fogros_dist.ros.cyclone_config import apply_loopback_config

    why = wan_unavailable()
    if why:
        print(f"error: the WAN link {why}: run as root on Linux with iproute2", file=sys.stderr)
        return 1
    apply_loopback_config()  # each namespace's DDS stays on its own lo
    os.environ["PYTHONUNBUFFERED"] = "1"
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # unwind (and clean up) as Ctrl-C does
    t0 = time.monotonic()
    configs = {"raw": {"rgb": "none", "depth": "none"}}
    configs["coded"] = {"rgb": args.rgb_codec, "depth": args.depth_codec}
    results: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="fogros-wan-") as tmp,
        wan_link(congestion_control=args.tcp_cc) as link,
    ):
        workdir = Path(args.keep or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        print("rendering frames", file=sys.stderr)
        np.savez(workdir / "frames.npz", rgb=rgb_frames(RGB_FRAMES), depth=depth_frames(DEPTH_FRAMES))
        link_figures = measure_link(link)
        print(f"link: {json.dumps(link_figures)}", file=sys.stderr)
        for label in args.runs:
            results[label] = _run_codec(label, configs[label], link, args, workdir)
    from importlib.metadata import version

    meta = {
        "seconds": args.seconds,
        "alone_seconds": args.alone_seconds,
        "offer_hz": args.offer_hz,
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "zenoh": version("eclipse-zenoh"),
        "cyclonedds": version("cyclonedds"),
        "platform": platform.platform(),
        "duration_s": round(time.monotonic() - t0, 1),
    }
    data = {"meta": meta, "link": link_figures, "results": results}
    if set(results) == {"raw", "coded"}:
        data["verdicts"] = _verdicts(results, link_figures)
    target = QUICK_RESULTS if args.quick else RESULTS
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, indent=1) + "\n")
    if "verdicts" in data:
        table = _markdown(data)
        print(table)
        if not args.quick:
            _write_benchmarks_md(table)
    print(f"wrote {target}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--role", choices=("orchestrate", "robot", "cloud"), default="orchestrate")
    parser.add_argument(
        "--quick", action="store_true", help="10 s together, 5 s alone (a try, not the table)"
    )
    parser.add_argument("--seconds", type=float, default=0.0, help="both streams together (default 60)")
    parser.add_argument("--alone-seconds", type=float, default=0.0, help="each stream alone (default 12)")
    parser.add_argument("--offer-hz", type=float, default=60.0, help="each stream's rate alone (default 60)")
    parser.add_argument("--rgb-codec", default="jpeg:90", help="the coded run's RGB codec (default jpeg:90)")
    parser.add_argument(
        "--depth-codec", default="zstd", help="the coded run's depth codec (default zstd, what auto picks)"
    )
    parser.add_argument(
        "--tcp-cc",
        default=DEFAULT_CONGESTION_CONTROL,
        help=f"TCP congestion control in both namespaces (default {DEFAULT_CONGESTION_CONTROL}, loss-based)",
    )
    parser.add_argument(
        "--compare-cc",
        default="bbr",
        help="the coded run repeats both streams under this one too (default bbr; '' for none)",
    )
    parser.add_argument("--runs", nargs="+", choices=("raw", "coded"), default=["raw", "coded"])
    parser.add_argument(
        "--keep", default="", help="keep the frames, specs and bridge stats in this directory"
    )
    parser.add_argument("--frames", default="", help=argparse.SUPPRESS)
    parser.add_argument(
        "--domain", type=int, default=random.Random().randrange(150, 230), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (10.0 if args.quick else 60.0)
    args.alone_seconds = args.alone_seconds or (5.0 if args.quick else 12.0)
    if args.role == "robot":
        return run_robot_app(args)
    if args.role == "cloud":
        return run_cloud_node(args)
    try:
        return orchestrate(args)
    except KeyboardInterrupt:
        print("interrupted: every process stopped, the namespaces removed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
