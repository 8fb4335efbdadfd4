"""launch's ``prefix=``: the node launcher puts it in front of the node itself, not of the launcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fogros_dist.node_launcher import PREFIX_ENV

# Prints its own command line as the prefix left it, and whether the prefix variable leaked.
_SHOW = (
    f"#!{sys.executable}\nimport json, os, sys\n"
    f"print(json.dumps([sys.argv[1:], os.environ.get('{PREFIX_ENV}')]))\n"
)


def _launch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fogros_dist.node_launcher", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_prefix_wraps_the_executable_and_leaves_no_trace(tmp_path: Path) -> None:
    exe = tmp_path / "lib" / "pkg" / "show"
    exe.parent.mkdir(parents=True)
    exe.write_text(_SHOW)
    exe.chmod(0o755)
    env = dict(os.environ, AMENT_PREFIX_PATH=str(tmp_path))
    env[PREFIX_ENV] = json.dumps([sys.executable, "-X", "utf8"])
    done = _launch(env, "pkg", "show", "--", "a", "--ros-args")
    assert done.returncode == 0, done.stderr
    # The prefix ran the executable file itself (here: an interpreter given the script).
    assert json.loads(done.stdout) == [["a", "--ros-args"], None]


def test_prefix_runs_an_entry_point_through_the_launcher_again() -> None:
    env = dict(os.environ, **{PREFIX_ENV: json.dumps(["env", "FOGROS_TEST_MARK=1"])})
    done = _launch(env, "fogros_dist", "fogros-dist", "--", "--help")
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower()


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ('["no-such-debugger"]', "cannot execute 'no-such-debugger' on this machine"),
        ('"gdb"', "is not a JSON list of words"),
    ],
)
def test_a_bad_prefix_fails_in_one_line(prefix: str, message: str) -> None:
    env = dict(os.environ, **{PREFIX_ENV: prefix})
    done = _launch(env, "fogros_dist", "fogros-dist", "--", "--help")
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1
    assert message in done.stderr
