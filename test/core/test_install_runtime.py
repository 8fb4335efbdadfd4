"""``install_runtime``: what it installs into which interpreter, and how it refuses."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fogros_dist import install_runtime
from fogros_dist.errors import ProvisionError
from fogros_dist.requirements import find_requirements


def _requirements(tmp_path: Path) -> Path:
    path = tmp_path / "requirements.txt"
    path.write_text('rosbags==0.11.9\nnumpy==2.4.6; python_version >= "3.11"\ntorch==2.13.0\n')
    return path


def test_a_system_python_gets_a_user_install_and_keeps_its_own_recent_numpy(tmp_path: Path) -> None:
    facts = {"version": "3.12", "venv": False, "pip": True, "externally_managed": True, "numpy": "1.26.4"}
    pip, pins, notes = install_runtime.plan_install(
        python="/usr/bin/python3", facts=facts, requirements=_requirements(tmp_path), workloads=True
    )
    # PEP 668: --break-system-packages, which with --user touches only the user's site.
    assert pip[-2:] == ["--user", "--break-system-packages"]
    assert pins == ["rosbags==0.11.9", "torch==2.13.0"]
    assert notes == ["keeping the interpreter's numpy 1.26.4 (ROS 2's compiled modules use it)"]


def test_an_old_numpy_is_replaced_and_core_leaves_the_workloads_out(tmp_path: Path) -> None:
    facts = {"version": "3.11", "venv": False, "pip": True, "externally_managed": False, "numpy": "1.24.2"}
    pip, pins, _ = install_runtime.plan_install(
        python="/usr/bin/python3", facts=facts, requirements=_requirements(tmp_path), workloads=False
    )
    assert pip[-1] == "--user"
    assert pins == ["rosbags==0.11.9", 'numpy==2.4.6; python_version >= "3.11"']


def test_a_venv_is_installed_into_directly(tmp_path: Path) -> None:
    facts = {"version": "3.10", "venv": True, "pip": True, "externally_managed": False, "numpy": None}
    pip, _, _ = install_runtime.plan_install(
        python="/opt/venv/bin/python", facts=facts, requirements=_requirements(tmp_path), workloads=True
    )
    assert "--user" not in pip


def test_an_interpreter_without_pip_is_named_with_the_fix(tmp_path: Path) -> None:
    facts = {"version": "3.12", "venv": False, "pip": False, "externally_managed": True, "numpy": None}
    with pytest.raises(
        ProvisionError, match=r"^the interpreter /usr/bin/python3 \(Python 3\.12\) has no pip: install"
    ):
        install_runtime.plan_install(
            python="/usr/bin/python3", facts=facts, requirements=_requirements(tmp_path), workloads=True
        )


def test_dry_run_against_this_interpreter_prints_the_installed_pins(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert install_runtime.main(["--python", sys.executable, "--dry-run", "--core"]) == 0
    out = capsys.readouterr().out
    assert f"from {find_requirements()} into {sys.executable}" in out
    assert "eclipse-zenoh==1.10.2" in out
    assert "torch" not in out
    # .venv is a venv and has numpy 2.4.6 (>= the floor): it is kept.
    assert "keeping the interpreter's numpy" in out


def test_a_missing_interpreter_fails_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert install_runtime.main(["--python", "/nonexistent/python3", "--dry-run"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("install_runtime: error: cannot run the interpreter '/nonexistent/python3'")
    assert "\n" not in err
