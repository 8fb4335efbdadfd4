"""One-way latency of the fogros_dist bridge against raw Zenoh and raw Cyclone DDS.

Three paths, each between separate processes on this host, for sensor_msgs/msg/Image messages
whose pixel data is 1 KB, 100 KB, 1 MB and 6 MB:

  (a) zenoh   raw Zenoh pub -> sub, TCP on 127.0.0.1, shared memory off (the bridge's own config)
  (b) dds     raw Cyclone DDS pub -> sub (DdsGraph, loopback config), one DDS domain
  (c) bridge  DDS pub (domain A) -> robot bridge -> Zenoh -> machine bridge -> DDS sub (domain B);
              the domains differ, so the bridges are the only path

and, in the same run, (a) and (c) again over mutually authenticated TLS with certificates of a
deployment CA (net/tls.py), as every remote machine's link runs by default: the TLS/TCP ratio is
what privacy costs.

One-way latency = receive time - send time stamped into header.stamp just before publishing
(one host, one clock). The target is (c) <= 1.25 x ((a) + (b)) at every size, for the median
and the p99: the bridge should cost little more than the two hops it is made of.

Usage: python bench/bridge_latency.py [--samples N] [--warmup N] [--rate HZ] [--sizes ...]
Writes bench/results/bridge_latency.json and the table in BENCHMARKS.md between the
``<!-- bridge_latency:begin -->`` / ``<!-- bridge_latency:end -->`` markers.
Every process it starts is stopped by its PID. Nothing leaves the loopback interface.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import queue
import random
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "bridge_latency.json"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
BEGIN, END = "<!-- bridge_latency:begin -->", "<!-- bridge_latency:end -->"

IMAGE = "sensor_msgs/msg/Image"
TOPIC = "/bench/image"
KEY = "bench/image"
SIZES = (1_000, 100_000, 1_000_000, 6_000_000)
TARGET_RATIO = 1.25
# zenoh: raw Zenoh; dds: raw DDS; egress: robot DDS -> robot bridge -> Zenoh -> a Zenoh app in the
# cloud; bridge: robot DDS -> robot bridge -> Zenoh -> machine bridge -> DDS app on the machine.
# zenoh-tls, bridge-tls: zenoh and bridge over mTLS (the default link of a remote machine).
MODES = ("zenoh", "dds", "egress", "bridge", "zenoh-tls", "bridge-tls")

# Phases carried in Image.height: probes find out when the whole path is up, warm-up messages
# let every cache, socket buffer and allocator settle, measured ones are timed.
PROBE, WARMUP, MEASURED = 0, 1, 2
# Byte offsets in the CDR of an Image whose frame_id is "bench": encapsulation header (4),
# stamp.sec (4), stamp.nanosec (4), frame_id length (4) + "bench\0" (6) + padding to 4, then
# height, width. Checked against rosbags at start-up (see _templates).
_STAMP = struct.Struct("<iI")
_STAMP_AT = 4
_MARK = struct.Struct("<II")  # height = phase, width = sequence number
_MARK_AT = 24
FRAME_ID = "bench"


# -- message templates ---------------------------------------------------------------------------


def _templates(sizes: Sequence[int]) -> dict[int, bytearray]:
    """A serialized Image per size, to patch the stamp and marks into before each send."""
    import numpy as np

    from fogros_dist.ros.types import MessageTypes

    types = MessageTypes("jazzy")
    image, header, stamp = (
        types.message_class(IMAGE),
        types.message_class("std_msgs/msg/Header"),
        types.message_class("builtin_interfaces/msg/Time"),
    )
    out = {}
    for size in sizes:
        msg = image(
            header=header(stamp=stamp(sec=0, nanosec=0), frame_id=FRAME_ID),
            height=0,
            width=0,
            encoding="mono8",
            is_bigendian=0,
            step=size,
            data=np.frombuffer(random.Random(size).randbytes(size), dtype=np.uint8),
        )
        buf = bytearray(types.serialize(IMAGE, msg))
        _STAMP.pack_into(buf, _STAMP_AT, 12, 34)
        _MARK.pack_into(buf, _MARK_AT, 5, 6)
        check: Any = types.deserialize(IMAGE, bytes(buf))
        if (check.header.stamp.sec, check.header.stamp.nanosec, check.height, check.width) != (12, 34, 5, 6):
            raise RuntimeError("Image CDR layout is not the one this benchmark patches")
        out[size] = buf
    return out


def _stamp(buf: bytearray, phase: int, seq: int) -> bytes:
    now = time.time_ns()
    _STAMP.pack_into(buf, _STAMP_AT, now // 1_000_000_000, now % 1_000_000_000)
    _MARK.pack_into(buf, _MARK_AT, phase, seq)
    return bytes(buf)


def _parse(cdr: bytes, received_ns: int) -> tuple[int, int, int]:
    """(phase, sequence number, one-way latency in ns) of a received message."""
    sec, nanosec = _STAMP.unpack_from(cdr, _STAMP_AT)
    phase, seq = _MARK.unpack_from(cdr, _MARK_AT)
    return phase, seq, received_ns - (sec * 1_000_000_000 + nanosec)


# -- worker processes ----------------------------------------------------------------------------


class _Transport:
    """What a sender or receiver process needs: publish, or subscribe with a callback."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.closers: list[Callable[[], None]] = []

    def publisher(self) -> Callable[[bytes], None]:
        if self.args.transport == "zenoh":
            import zenoh

            from fogros_dist.net.zenoh_config import build_config

            session = zenoh.open(build_config(connect=(self.args.endpoint,), bridge=self._bridge()))
            self.closers.append(session.close)
            pub = session.declare_publisher(
                KEY,
                congestion_control=zenoh.CongestionControl.BLOCK,
                reliability=zenoh.Reliability.RELIABLE,
            )
            put: Callable[[bytes], None] = pub.put
            return put
        graph = self._graph()
        publish: Callable[[bytes], None] = graph.publisher(self._topic()).publish
        return publish

    def subscribe(self, callback: Callable[[bytes, int], None]) -> None:
        if self.args.transport == "zenoh":
            import zenoh

            from fogros_dist.net.zenoh_config import build_config

            session = zenoh.open(build_config(listen=(self.args.endpoint,), bridge=self._bridge()))
            self.closers.append(session.close)

            def on_sample(sample: Any) -> None:
                received = time.time_ns()
                callback(sample.payload.to_bytes(), received)

            subscriber = session.declare_subscriber(KEY, on_sample)
            self.closers.append(subscriber.undeclare)
            if self.args.announce:
                # Stand in for a machine bridge, so the robot bridge starts forwarding to us.
                from fogros_dist.net.bridge import bridge_token_key

                token = session.liveliness().declare_token(
                    bridge_token_key(deployment="bench", machine="gpu")
                )
                self.closers.append(token.undeclare)
            return
        graph = self._graph()
        graph.subscribe(self._topic(), lambda cdr: callback(cdr, time.time_ns()))

    def _bridge(self) -> Any:
        from fogros_dist.spec import BridgeSpec

        return BridgeSpec(tls_dir=self.args.tls_dir)

    def _graph(self) -> Any:
        from fogros_dist.ros.dds import DdsGraph

        graph = DdsGraph(self.args.domain)
        self.closers.append(graph.close)
        return graph

    def _topic(self) -> Any:
        from fogros_dist.spec import QosSpec, TopicSpec

        return TopicSpec(name=TOPIC, type=IMAGE, qos=QosSpec(depth=2), codec="none")

    def close(self) -> None:
        for close in reversed(self.closers):
            close()


def run_sender(args: argparse.Namespace) -> int:
    """Send probes until 'go' on stdin, then warm-up and measured messages for every size."""
    templates = _templates(args.sizes)
    transport = _Transport(args)
    publish = transport.publisher()
    go = threading.Event()

    def wait_for_go() -> None:
        sys.stdin.readline()
        go.set()

    threading.Thread(target=wait_for_go, daemon=True).start()
    print("ready", flush=True)
    period = 1.0 / args.rate
    probe = templates[min(args.sizes)]
    while not go.wait(period):
        publish(_stamp(probe, PROBE, 0))
    next_send = time.perf_counter()
    for size in args.sizes:
        buf = templates[size]
        for i in range(args.warmup + args.samples):
            phase, seq = (WARMUP, i) if i < args.warmup else (MEASURED, i - args.warmup)
            publish(_stamp(buf, phase, seq))
            next_send += period
            time.sleep(max(0.0, next_send - time.perf_counter()))  # pacing, not synchronization
    print("sent", flush=True)
    sys.stdin.readline()  # stay up (and keep DDS/Zenoh state) until the orchestrator is done
    transport.close()
    return 0


def run_receiver(args: argparse.Namespace) -> int:
    """Record every measured message's latency; write them when all arrived or on SIGTERM."""
    expected = args.samples * len(args.sizes)
    lock = threading.Lock()
    latencies: dict[int, list[int]] = {size: [] for size in args.sizes}
    sizes_by_len: dict[int, int] = {}
    templates = _templates(args.sizes)
    for size, buf in templates.items():
        sizes_by_len[len(buf)] = size
    first = threading.Event()
    done = threading.Event()
    count = [0]

    def on_message(cdr: bytes, received_ns: int) -> None:
        phase, _seq, latency = _parse(cdr, received_ns)
        if not first.is_set():
            first.set()
            print("first", flush=True)
        if phase != MEASURED:
            return
        size = sizes_by_len.get(len(cdr))
        if size is None:
            return
        with lock:
            latencies[size].append(latency)
            count[0] += 1
            if count[0] >= expected:
                done.set()

    signal.signal(signal.SIGTERM, lambda *_: done.set())
    transport = _Transport(args)
    transport.subscribe(on_message)
    print("ready", flush=True)
    done.wait()
    with lock:
        Path(args.out).write_text(json.dumps({str(k): v for k, v in latencies.items()}))
    print("complete", flush=True)
    transport.close()
    return 0


# -- orchestration -------------------------------------------------------------------------------


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[str]
    lines: queue.Queue[str] = field(default_factory=queue.Queue)

    def expect(self, word: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{self.name}: no {word!r} within {timeout:g} s")
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.popen.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited {self.popen.returncode} before {word!r}"
                    ) from None
                continue
            if line.split(":")[0].strip() == word or line.startswith(word):
                return

    def say(self, text: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(text + "\n")
        self.popen.stdin.flush()


@contextlib.contextmanager
def _processes() -> Iterator[Callable[..., _Proc]]:
    started: list[_Proc] = []

    def start(name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> _Proc:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # worker errors go straight to the console
            text=True,
            env=env,
            cwd=ROOT,
        )
        proc = _Proc(name=name, popen=popen)

        def pump() -> None:
            assert popen.stdout is not None
            for line in popen.stdout:
                proc.lines.put(line.rstrip("\n"))

        threading.Thread(target=pump, daemon=True).start()
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in reversed(started):
            if proc.popen.poll() is None:
                os.kill(proc.popen.pid, signal.SIGTERM)
        for proc in reversed(started):
            try:
                proc.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _worker(role: str, transport: str, args: argparse.Namespace, **extra: Any) -> list[str]:
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--role",
        role,
        "--transport",
        transport,
        "--samples",
        str(args.samples),
        "--warmup",
        str(args.warmup),
        "--rate",
        str(args.rate),
        "--sizes",
        *map(str, args.sizes),
    ]
    for key, value in extra.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv


def _measure(
    mode: str, args: argparse.Namespace, workdir: Path, domains: tuple[int, int]
) -> dict[int, list[int]]:
    out = workdir / f"{mode}.json"
    port = _free_port()
    tls = mode.endswith("-tls")
    mode = mode.removesuffix("-tls")
    endpoint = f"{'tls' if tls else 'tcp'}/127.0.0.1:{port}"
    # The listening side (machine) and the connecting side (robot) each present their own.
    listener, dialer = _credentials(workdir) if tls else ("", "")
    send_time = len(args.sizes) * (args.samples + args.warmup) / args.rate
    with _processes() as start:
        if mode == "zenoh":
            receiver = start(
                "zenoh receiver",
                _worker("receiver", "zenoh", args, endpoint=endpoint, out=out, tls_dir=listener),
            )
            receiver.expect("ready", 30)
            sender = start(
                "zenoh sender", _worker("sender", "zenoh", args, endpoint=endpoint, tls_dir=dialer)
            )
        elif mode == "dds":
            receiver = start("dds receiver", _worker("receiver", "dds", args, domain=domains[0], out=out))
            receiver.expect("ready", 30)
            sender = start("dds sender", _worker("sender", "dds", args, domain=domains[0]))
        elif mode == "egress":
            robot_domain = domains[0]
            receiver = start(
                "zenoh cloud app", _worker("receiver", "zenoh", args, endpoint=endpoint, out=out, announce=1)
            )
            receiver.expect("ready", 30)
            spec = _bridge_spec("robot", robot_domain, endpoint, workdir, tls_dir=dialer)
            bridge = start(
                "robot bridge", [sys.executable, "-m", "fogros_dist.net.bridge_main", "--spec", spec]
            )
            bridge.expect("bridge ready", 60)
            sender = start("robot app", _worker("sender", "dds", args, domain=robot_domain))
        else:
            robot_domain, machine_domain = domains
            receiver = start("machine app", _worker("receiver", "dds", args, domain=machine_domain, out=out))
            receiver.expect("ready", 30)
            for side, domain, tls_dir in (
                ("machine", machine_domain, listener),
                ("robot", robot_domain, dialer),
            ):
                spec = _bridge_spec(side, domain, endpoint, workdir, tls_dir=tls_dir)
                command = [sys.executable, "-m", "fogros_dist.net.bridge_main", "--spec", spec]
                bridge = start(f"{side} bridge", command)
                bridge.expect("bridge ready", 60)
            sender = start("robot app", _worker("sender", "dds", args, domain=robot_domain))
        sender.expect("ready", 30)
        receiver.expect("first", 30)
        sender.say("go")
        sender.expect("sent", send_time + 60)
        try:
            receiver.expect("complete", 10)
        except RuntimeError:
            os.kill(receiver.popen.pid, signal.SIGTERM)  # some were lost: take what arrived
            receiver.expect("complete", 10)
        sender.say("stop")
    return {int(k): v for k, v in json.loads(out.read_text()).items()}


def _credentials(workdir: Path) -> tuple[str, str]:
    """(machine's, robot's) TLS directories, issued by a fresh deployment CA as `up` issues them."""
    from fogros_dist.net.tls import DeploymentAuthority

    authority = DeploymentAuthority(deployment="bench")
    machine = authority.issue(workdir / "tls" / "gpu", name="gpu", addresses=("127.0.0.1",))
    robot = authority.issue(workdir / "tls" / "robot", name="robot")
    return str(machine.directory), str(robot.directory)


def _bridge_spec(side: str, domain: int, endpoint: str, workdir: Path, *, tls_dir: str = "") -> str:
    from fogros_dist.spec import BridgeRunSpec, BridgeSpec, QosSpec, TopicSpec, to_json

    topic = TopicSpec(name=TOPIC, type=IMAGE, qos=QosSpec(depth=2), codec="none")
    spec = BridgeRunSpec(
        deployment="bench",
        side=side,  # type: ignore[arg-type]
        machine="gpu" if side == "machine" else "robot",
        listen=(endpoint,) if side == "machine" else (),
        connect=(endpoint,) if side == "robot" else (),
        outbound=(topic,) if side == "robot" else (),
        inbound=(topic,) if side == "machine" else (),
        domain_id=domain,
        graph="dds",
        stats_path=str(workdir / f"{side}-stats.json"),
        bridge=BridgeSpec(tls_dir=tls_dir),
    )
    path = workdir / f"bridge-{side}.json"
    path.write_text(to_json(spec))
    return str(path)


def _summary(latencies_ns: list[int], expected: int) -> dict[str, Any]:
    ms = sorted(v / 1e6 for v in latencies_ns)
    if not ms:
        return {"samples": 0, "lost": expected, "median_ms": None, "p99_ms": None}
    p99 = ms[max(0, -(-99 * len(ms) // 100) - 1)]  # nearest rank
    return {
        "samples": len(ms),
        "lost": expected - len(ms),
        "median_ms": round(statistics.median(ms), 3),
        "p99_ms": round(p99, 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "max_ms": round(ms[-1], 3),
    }


def _label(size: int) -> str:
    return f"{size / 1e6:g} MB" if size >= 1_000_000 else f"{size / 1e3:g} KB"


def _rows(results: dict[str, dict[int, dict[str, Any]]], sizes: Sequence[int]) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        a, b = results["zenoh"][size], results["dds"][size]
        c, d = results["egress"][size], results["bridge"][size]
        row: dict[str, Any] = {"size": size}
        for stat in ("median_ms", "p99_ms"):
            if None in (a[stat], b[stat], c[stat], d[stat]):
                row[stat] = None
                continue
            ab, hops = a[stat] + b[stat], a[stat] + 2 * b[stat]
            row[stat] = {
                "a": a[stat],
                "b": b[stat],
                "a+b": round(ab, 3),
                # (c) is one DDS hop and one Zenoh hop with the robot bridge between them.
                "c": c[stat],
                "ratio": round(c[stat] / ab, 2),
                # (d) crosses DDS twice (robot app -> bridge, bridge -> machine app) and Zenoh
                # once: a + 2b is what its three hops cost on their own.
                "d": d[stat],
                "a+2b": round(hops, 3),
                "ratio_full": round(d[stat] / ab, 2),
                "ratio_hops": round(d[stat] / hops, 2),
            }
        rows.append(row)
    return rows


def _tls_rows(results: dict[str, dict[int, dict[str, Any]]], sizes: Sequence[int]) -> list[dict[str, Any]]:
    """What mTLS costs: (a) and (d) over TLS against the same paths over TCP, same run."""
    rows = []
    for size in sizes:
        row: dict[str, Any] = {"size": size}
        for stat in ("median_ms", "p99_ms"):
            tcp_a, tls_a = results["zenoh"][size][stat], results["zenoh-tls"][size][stat]
            tcp_d, tls_d = results["bridge"][size][stat], results["bridge-tls"][size][stat]
            if None in (tcp_a, tls_a, tcp_d, tls_d):
                row[stat] = None
                continue
            row[stat] = {
                "a": tcp_a,
                "a_tls": tls_a,
                "ratio_a": round(tls_a / tcp_a, 2),
                "d": tcp_d,
                "d_tls": tls_d,
                "ratio_d": round(tls_d / tcp_d, 2),
            }
        rows.append(row)
    return rows


def _markdown(rows: list[dict[str, Any]], tls_rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    def cell(row: dict[str, Any], stat: str, key: str) -> str:
        value = row[stat]
        if value is None:
            return "n/a"
        return f"{value[key]:.2f}" if key.startswith("ratio") else f"{value[key]:.3f}"

    lines = [
        f"One-way latency in ms, {meta['samples']} samples per size after {meta['warmup']} warm-up, "
        f"{meta['rate_hz']:g} Hz, {meta['cpus']} CPUs, eclipse-zenoh {meta['zenoh']}, "
        f"cyclonedds {meta['cyclonedds']}, run took {meta['duration_s']:g} s.",
        "(a) raw Zenoh, (b) raw Cyclone DDS, (c) robot DDS -> robot bridge -> Zenoh -> cloud app,",
        "(d) robot DDS -> robot bridge -> Zenoh -> machine bridge -> machine DDS app.",
        f"Target: c <= {TARGET_RATIO} x (a+b): same hops, plus the bridge. (d) adds a second DDS hop,",
        "so it is also shown against a + 2b, the cost of its three hops without the bridge processes.",
        "",
        "| size | stat | (a) zenoh | (b) dds | a+b | (c) egress | c/(a+b) | target met | (d) full | d/(a+b) "
        "| d/(a+2b) |",
        "|---:|---|---:|---:|---:|---:|---:|:---:|---:|---:|---:|",
    ]
    for row in rows:
        for stat, name in (("median_ms", "median"), ("p99_ms", "p99")):
            value = row[stat]
            met = "n/a" if value is None else ("yes" if value["ratio"] <= TARGET_RATIO else "**no**")
            lines.append(
                f"| {_label(row['size'])} | {name} | {cell(row, stat, 'a')} | {cell(row, stat, 'b')} | "
                f"{cell(row, stat, 'a+b')} | {cell(row, stat, 'c')} | {cell(row, stat, 'ratio')} | {met} | "
                f"{cell(row, stat, 'd')} | {cell(row, stat, 'ratio_full')} | "
                f"{cell(row, stat, 'ratio_hops')} |"
            )
    lines += [
        "",
        "What mTLS costs (the default link of SSH and AWS machines), same run: (a) and (d) over TLS",
        "with certificates of a deployment CA, against the same paths over TCP.",
        "",
        "| size | stat | (a) zenoh TCP | (a) zenoh mTLS | TLS/TCP | (d) full TCP | (d) full mTLS | TLS/TCP |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in tls_rows:
        for stat, name in (("median_ms", "median"), ("p99_ms", "p99")):
            lines.append(
                f"| {_label(row['size'])} | {name} | {cell(row, stat, 'a')} | {cell(row, stat, 'a_tls')} | "
                f"{cell(row, stat, 'ratio_a')} | {cell(row, stat, 'd')} | {cell(row, stat, 'd_tls')} | "
                f"{cell(row, stat, 'ratio_d')} |"
            )
    return "\n".join(lines)


def _write_benchmarks_md(table: str) -> None:
    block = f"{BEGIN}\n{table}\n{END}"
    if BENCHMARKS_MD.exists():
        text = BENCHMARKS_MD.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            BENCHMARKS_MD.write_text(head + block + tail)
            return
        BENCHMARKS_MD.write_text(text.rstrip() + "\n\n## Bridge latency\n\n" + block + "\n")
        return
    BENCHMARKS_MD.write_text(
        "# Benchmarks\n\n"
        "Every number here comes from a script in this repository; re-run it to reproduce them on\n"
        "your machine. Each section says how.\n\n"
        "## Bridge latency\n\n"
        "`make bench` (or `.venv/bin/python bench/bridge_latency.py`, under 3 minutes) measures\n"
        "one-way latency of sensor_msgs/Image messages between separate processes on one host, over\n"
        "loopback only, shared memory off. Raw JSON: `bench/results/bridge_latency.json`.\n\n" + block + "\n"
    )


def orchestrate(args: argparse.Namespace) -> int:
    from importlib.metadata import version

    from fogros_dist.ros.cyclone_config import apply_loopback_config

    apply_loopback_config()  # every child's DDS stays on lo
    os.environ["PYTHONUNBUFFERED"] = "1"
    rng = random.Random()
    robot_domain = rng.randrange(150, 230)
    domains = (robot_domain, robot_domain + 1)
    results: dict[str, dict[int, dict[str, Any]]] = {}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fogros-bench-") as tmp:
        workdir = Path(args.keep or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for mode in args.modes:
            started = time.monotonic()
            raw = _measure(mode, args, workdir, domains)
            results[mode] = {size: _summary(raw.get(size, []), args.samples) for size in args.sizes}
            print(f"{mode}: done in {time.monotonic() - started:.1f} s", file=sys.stderr)
            for size in args.sizes:
                s = results[mode][size]
                print(
                    f"  {_label(size):>7}: median {s['median_ms']} ms, p99 {s['p99_ms']} ms, "
                    f"lost {s['lost']}",
                    file=sys.stderr,
                )
    meta = {
        "samples": args.samples,
        "warmup": args.warmup,
        "rate_hz": args.rate,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "zenoh": version("eclipse-zenoh"),
        "cyclonedds": version("cyclonedds"),
        "platform": platform.platform(),
        "duration_s": round(time.monotonic() - t0, 1),
    }
    if len(results) < len(MODES):
        return 0  # a partial run is for investigation: keep the published numbers as they are
    rows = _rows(results, args.sizes)
    tls_rows = _tls_rows(results, args.sizes)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "meta": meta,
                "results": {m: {str(k): v for k, v in r.items()} for m, r in results.items()},
                "rows": rows,
                "tls_rows": tls_rows,
            },
            indent=1,
        )
        + "\n"
    )
    table = _markdown(rows, tls_rows, meta)
    _write_benchmarks_md(table)
    print(table)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--role", choices=("orchestrate", "sender", "receiver"), default="orchestrate")
    parser.add_argument("--transport", choices=("zenoh", "dds"), default="zenoh")
    parser.add_argument("--samples", type=int, default=150, help="measured messages per size (default 150)")
    parser.add_argument(
        "--warmup", type=int, default=20, help="unmeasured messages per size first (default 20)"
    )
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second (default 20)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="pixel bytes per image")
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=MODES,
        default=list(MODES),
        help="paths to measure (default all; the table needs all)",
    )
    parser.add_argument(
        "--keep", default="", help="keep worker files (bridge stats, raw samples) in this directory"
    )
    parser.add_argument("--endpoint", default="")
    parser.add_argument("--domain", type=int, default=0)
    parser.add_argument("--out", default="")
    parser.add_argument("--announce", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--tls-dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "sender":
        return run_sender(args)
    if args.role == "receiver":
        return run_receiver(args)
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
