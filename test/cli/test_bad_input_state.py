"""A state home that cannot be used, and state files that cannot be read: one line, exit 1, and
the other deployments neither hidden nor left running."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import other_user
import pytest
from cli_test_helpers import Run, write_deployment

from fogros_dist.deploy.state import StateStore
from fogros_dist.providers.local.process import process_alive

CLI = [sys.executable, "-m", "fogros_dist.cli.main"]


def _error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("fogros-dist: error: ")]


def _one_error(result: subprocess.CompletedProcess[str]) -> str:
    errors = _error_lines(result)
    assert len(errors) == 1, result.stderr
    return errors[0]


def _with_home(cli_env: dict[str, str], home: Path) -> Run:
    env = dict(cli_env, FOGROS_DIST_HOME=str(home))

    def run(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )

    return run


@pytest.mark.parametrize("kind", ["a file", "under a file"])
def test_a_home_that_is_not_a_directory_fails_every_verb_in_one_line(
    cli_env: dict[str, str], tmp_path: Path, kind: str
) -> None:
    blocker = tmp_path / "homefile"
    blocker.write_text("not a directory\n")
    home = blocker if kind == "a file" else blocker / "state"
    fogros = _with_home(cli_env, home)
    spec = write_deployment(tmp_path / "d.toml")
    for args in (("list",), ("up", str(spec)), ("down", "--all"), ("down", "t1"), ("logs", "t1")):
        line = _one_error(fogros(*args))
        assert f"state home {home} is not usable" in line, (args, line)
        assert "set FOGROS_DIST_HOME to a directory you can write" in line
    assert blocker.read_text() == "not a directory\n"


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    """A directory user nobody can reach (pytest's tmp_path is under a 0700 directory)."""
    why = other_user.unavailable()
    if why:
        pytest.skip(why)
    path = Path(tempfile.mkdtemp(prefix="fogros-state-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_read_only_home_fails_up_in_one_line_and_changes_nothing(
    cli_env: dict[str, str], nobody_dir: Path
) -> None:
    home = nobody_dir / "home"
    home.mkdir(mode=0o755)  # root's: nobody may read it, not write it
    spec = write_deployment(nobody_dir / "d.toml")
    env = dict(cli_env, FOGROS_DIST_HOME=str(home))
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *CLI]
    result = subprocess.run(
        [*as_nobody, "up", str(spec)], env=env, capture_output=True, text=True, timeout=90, check=False
    )
    line = _one_error(result)
    assert f"state home {home} is not usable" in line, line
    assert "Permission denied" in line
    assert list(home.iterdir()) == []
    listing = subprocess.run(
        [*as_nobody, "list", "--json"], env=env, capture_output=True, text=True, timeout=90, check=False
    )
    assert listing.returncode == 0, listing.stderr
    assert json.loads(listing.stdout) == []


def _bad_state(home: Path, name: str, make: Callable[[Path], None]) -> Path:
    path = home / "deployments" / name / "state.json"
    path.parent.mkdir(parents=True)
    make(path)
    return path


UNREADABLE: dict[str, tuple[Callable[[Path], None], str]] = {
    "not-utf8": (lambda p: p.write_bytes(b"\xff\xfe{}"), "not UTF-8 at byte 0"),
    "not-json": (lambda p: p.write_text("{ not json"), "Expecting property name"),
    "a-list": (lambda p: p.write_text("[1, 2]"), "expected an object, got list"),
    "a-directory": (lambda p: p.mkdir(), "a directory"),
    "a-device": (lambda p: p.symlink_to("/dev/zero"), "not a regular file"),
    "wrong-fields": (lambda p: p.write_text('{"spec": 5}'), "DeploymentState.spec: expected an object"),
}


@pytest.mark.parametrize("kind", sorted(UNREADABLE))
def test_list_shows_an_unreadable_state_file_instead_of_hiding_it(
    fogros: Run, cli_env: dict[str, str], kind: str
) -> None:
    home = Path(cli_env["FOGROS_DIST_HOME"])
    make, reason = UNREADABLE[kind]
    path = _bad_state(home, "broken", make)
    listing = fogros("list", "--json", timeout=30)
    assert listing.returncode == 0, listing.stderr
    rows = json.loads(listing.stdout)
    assert [row["name"] for row in rows] == ["broken"]
    assert rows[0]["status"].startswith("unreadable: "), rows
    assert reason in rows[0]["status"]
    table = fogros("list", timeout=30)
    assert "broken" in table.stdout
    assert "unreadable: " in table.stdout
    line = _one_error(fogros("down", "broken", timeout=30))
    assert f"state file {path} is unreadable" in line
    assert path.exists() or path.is_symlink()


def test_down_all_tears_down_the_others_and_names_the_unreadable_one(
    fogros: Run, cli_env: dict[str, str], tmp_path: Path
) -> None:
    home = Path(cli_env["FOGROS_DIST_HOME"])
    spec = write_deployment(tmp_path / "good.toml", name="good")
    up = fogros("up", "--detach", str(spec), timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    running = StateStore(home).load("good")
    processes = [*running.processes, running.supervisor]
    assert all(record is not None and process_alive(record) for record in processes)
    broken = _bad_state(home, "broken", lambda p: p.write_bytes(b"\x00\xff"))
    before = broken.read_bytes()
    listing = json.loads(fogros("list", "--json", timeout=30).stdout)
    assert {row["name"]: row["status"].split(":")[0] for row in listing} == {
        "broken": "unreadable",
        "good": "running",
    }
    down = fogros("down", "--all", timeout=120)
    errors = _error_lines(down)
    assert len(errors) == 1, down.stderr
    assert f"state file {broken} is unreadable" in errors[0]
    assert "(skipped; the others are torn down)" in errors[0]
    assert "deployment good is down" in down.stdout
    assert all(record is not None and not process_alive(record) for record in processes)
    assert broken.read_bytes() == before
    assert StateStore(home).names() == ["broken"]
