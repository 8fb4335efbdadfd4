"""The robot-side parts of the runtime bootstrap that need no host: requirements, keys, the wheel."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

import fogros_dist
from fogros_dist.errors import Cancelled, ProvisionError
from fogros_dist.remote import selfwheel
from fogros_dist.remote.selfwheel import build_self_wheel
from fogros_dist.remote.wheelhouse import (
    TargetPython,
    ensure_wheelhouse,
    runtime_requirements,
    wheelhouse_key,
)


def test_requirements_leave_torch_out_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text("# pins\nnumpy==2.4.6  # arrays\n\ntorch==2.13.0\nparamiko==5.1.0\n")
    assert runtime_requirements(torch=False, path=path) == ("numpy==2.4.6", "paramiko==5.1.0")
    assert runtime_requirements(torch=True, path=path) == ("numpy==2.4.6", "torch==2.13.0", "paramiko==5.1.0")
    # The checkout's own file is the default.
    assert any(line.startswith("eclipse-zenoh==") for line in runtime_requirements(torch=False))
    with pytest.raises(
        ProvisionError,
        match=r"cannot read the runtime requirements .*/nope\.txt .*set FOGROS_DIST_REQUIREMENTS",
    ):
        runtime_requirements(torch=False, path=tmp_path / "nope.txt")


def test_markers_are_evaluated_for_the_hosts_python_not_the_robots(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text(
        'numpy==2.4.6; python_version >= "3.11"\nnumpy==2.2.6; python_version < "3.11"\n'
        'tomli==2.2.1; python_version < "3.11"\n'
    )
    (tmp_path / "requirements-build.txt").write_text("colcon-core==0.21.3\n")
    py310 = TargetPython(version="3.10", implementation="cpython", machine="x86_64", libc="glibc-2.35")
    py312 = TargetPython(version="3.12", implementation="cpython", machine="x86_64", libc="glibc-2.39")
    assert runtime_requirements(torch=False, target=py310, path=path) == ("numpy==2.2.6", "tomli==2.2.1")
    assert runtime_requirements(torch=False, target=py312, path=path) == ("numpy==2.4.6",)
    assert runtime_requirements(torch=False, target=py312, path=path, build_tools=True) == (
        "numpy==2.4.6",
        "colcon-core==0.21.3",
    )
    # The checkout's own files, for a Humble host (Python 3.10).
    humble = runtime_requirements(torch=True, target=py310, build_tools=True)
    assert "numpy==2.2.6" in humble
    assert "tomli==2.2.1" in humble
    assert any(line.startswith("colcon-common-extensions==") for line in humble)


def test_wheelhouse_key_follows_the_requirements_and_the_host_python() -> None:
    here = TargetPython(version="3.11", implementation="cpython", machine="x86_64", libc="glibc-2.36")
    arm = TargetPython(version="3.11", implementation="cpython", machine="aarch64", libc="glibc-2.36")
    pins = ("numpy==2.4.6",)
    assert wheelhouse_key(pins, here) == wheelhouse_key(pins, here)
    assert wheelhouse_key(pins, here) != wheelhouse_key(pins, arm)
    assert wheelhouse_key(pins, here) != wheelhouse_key(("numpy==2.4.5",), here)
    assert here.tag == "cp311"


def test_self_wheel_is_reproducible_and_installs_with_its_entry_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same files (a snapshot: this checkout may be edited while the test runs) give the same wheel.
    snapshot = selfwheel.package_files()
    monkeypatch.setattr(selfwheel, "package_files", lambda: snapshot)
    first = build_self_wheel(cache_dir=tmp_path / "a")
    second = build_self_wheel(cache_dir=tmp_path / "b")
    assert first.key == second.key
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.filename == f"fogros_dist-{fogros_dist.__version__}+g{first.key[:12]}-py3-none-any.whl"
    with zipfile.ZipFile(first.path) as archive:
        names = archive.namelist()
    assert "fogros_dist/remote/host_agent.py" in names
    assert not any("__pycache__" in name for name in names)
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--no-deps",
            "--target",
            str(target),
            str(first.path),
        ],
        check=True,
        capture_output=True,
    )
    entry_points = next(target.glob("fogros_dist-*.dist-info")) / "entry_points.txt"
    assert "edge_detector = fogros_dist.nodes.edge_detector:main" in entry_points.read_text()


def test_a_cancelled_wheelhouse_download_stops_pip_and_leaves_no_partial(tmp_path: Path) -> None:
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(Cancelled) as caught:
            # numpy's wheel alone takes pip longer than half a second to resolve and fetch.
            ensure_wheelhouse(
                requirements=("numpy==2.4.6",),
                target=TargetPython.here(),
                cache_dir=tmp_path,
                machine="gpu",
                cancel=cancel,
            )
    finally:
        timer.cancel()
    assert time.monotonic() - started < 0.5 + 1.0
    assert str(caught.value) == "machine 'gpu': stopped on request while downloading the runtime's wheels"
    # Neither the wheelhouse nor its partial download is left: the next up starts afresh.
    assert list((tmp_path / "wheelhouse").iterdir()) == []
