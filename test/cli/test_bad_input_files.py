"""Bad deployment files: one line naming the file, the field and the fix; exit 1; nothing changed.

"Nothing changed": the state home is not even created, and nothing appears anywhere else either.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from cli_test_helpers import Run, write_deployment


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("fogros-dist: error: ")
    return lines[0]


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _swap(path: Path, old: str, new: str) -> Path:
    path.write_text(path.read_text().replace(old, new, 1))
    return path


def _dir(work: Path) -> Path:
    path = work / "adir"
    path.mkdir()
    return path


def _bytes(work: Path, data: bytes) -> Path:
    path = work / "d.toml"
    path.write_bytes(data)
    return path


def _fifo(work: Path) -> Path:
    path = work / "pipe.toml"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_dir, r"'.*adir' is a directory: give the TOML file in it"),
        (lambda d: _bytes(d, b'name = "\xff\xfe"\n'), r"is not UTF-8 text \(byte 8\): save it as UTF-8"),
        (lambda d: _bytes(d, b"# " + b"x" * (1024 * 1024 + 10) + b"\n"), r"is larger than 1024 KiB"),
        (_fifo, r"is not a regular file \(a FIFO\)"),
        (
            lambda d: _bytes(d, b'name = "t1"\nmachines = { name = "gpu" }\n'),
            r"machines: expected a list, got a table",
        ),
        (
            lambda d: _bytes(d, b'name = "t1"\nmachines = [[1, 2]]\n'),
            r"machines\[0\]: expected a table, got a list",
        ),
        (
            lambda d: _bytes(d, b'name = "t1"\nnodes = ["edges"]\n'),
            r"nodes\[0\]: expected a table, got a string",
        ),
        (
            lambda d: _bytes(
                d, b'name = "t1"\n[[nodes]]\nname = "e"\ntopics_in = [{ name = "/a", qos = "x" }]\n'
            ),
            r"topics_in: TopicSpec.qos: expected an object, got str",
        ),
        (lambda d: _bytes(d, b'name = "t1"\nlog_max_bytes = 10\n'), r"log_max_bytes 10 is out of range"),
        (
            lambda d: _bytes(d, b'name = "t1"\nlog_max_bytes = true\n'),
            r"log_max_bytes: expected int, got True",
        ),
        (
            lambda d: _bytes(d, b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n"),
            r"nests arrays or tables too deeply",
        ),
    ],
    ids=[
        "directory",
        "not-utf8",
        "too-large",
        "fifo",
        "table-for-list",
        "list-for-table",
        "string-for-table",
        "qos-not-a-table",
        "log-size-range",
        "log-size-bool",
        "deep-nesting",
    ],
)
def test_unreadable_or_misshapen_files(fogros: Run, tmp_path: Path, make: object, expected: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    path: Path = make(work)  # type: ignore[operator]
    before = _tree(tmp_path)
    line = _one_line_error(fogros("up", str(path), timeout=60))
    assert re.search(expected, line), line
    assert _tree(tmp_path) == before
    assert not (tmp_path / "home").exists()


def test_a_device_is_refused_without_reading_it(fogros: Run, tmp_path: Path) -> None:
    # /dev/zero never ends: reading it would hang (and fill memory); it is refused by its kind.
    line = _one_line_error(fogros("up", "/dev/zero", timeout=30))
    assert "'/dev/zero' is not a regular file (a character device): give a TOML file" in line
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'provider = "local"\n',
            'provider = "local"\n[machines.options]\ndomain_id = true\n',
            r"domain_id True is invalid",
        ),
        (
            'name = "edges"',
            'name = "ed\\u0000ges"',
            r"nodes\[0\]\.name: 'ed\\x00ges' contains a NUL character",
        ),
        (
            'package = "fogros_dist"',
            'package = "fogros\\u0007dist"',
            r"package: 'fogros\\x07dist' contains the control",
        ),
        (
            'executable = "edge_detector"',
            'executable = "edge\\ndetector"',
            r"executable: 'edge\\ndetector' contains",
        ),
        (
            'topics_in = ["/camera/image',
            'arguments = ["a\\u0000b"]\ntopics_in = ["/camera/image',
            r"arguments\[0\]: 'a\\x00b' contains a NUL",
        ),
        (
            'topics_in = ["/camera/image',
            'env = { "A\\u001bB" = "x" }\ntopics_in = ["/camera/image',
            r"env.*'A\\x1bB' contains the control character",
        ),
    ],
    ids=[
        "domain-id-bool",
        "nul-in-node-name",
        "bell-in-package",
        "newline-in-executable",
        "nul-in-argument",
        "escape-in-env-name",
    ],
)
def test_wrong_types_and_control_characters(
    fogros: Run, tmp_path: Path, old: str, new: str, expected: str
) -> None:
    spec = _swap(write_deployment(tmp_path / "d.toml"), old, new)
    before = _tree(tmp_path)
    line = _one_line_error(fogros("up", str(spec)))
    assert re.search(expected, line), line
    assert _tree(tmp_path) == before


def test_a_machine_name_that_climbs_out_creates_nothing_anywhere(fogros: Run, tmp_path: Path) -> None:
    spec = write_deployment(tmp_path / "d.toml")
    spec.write_text(spec.read_text().replace('"gpu"', '"../../x"'))
    before = _tree(tmp_path)
    line = _one_line_error(fogros("up", str(spec)))
    assert "machine name '../../x' is invalid" in line
    assert _tree(tmp_path) == before
    assert not (tmp_path.parent / "x").exists()


def test_a_file_that_cannot_be_read_names_the_reason(fogros: Run, tmp_path: Path) -> None:
    spec = write_deployment(tmp_path / "d.toml")
    spec.chmod(0)
    if os.access(spec, os.R_OK):
        # root reads anything: make it unreadable in another way (a dangling symlink loop).
        spec.unlink()
        spec.symlink_to(spec)
        expected = r"cannot be opened \(Too many levels of symbolic links\)"
    else:
        expected = r"cannot be opened \(Permission denied\)"
    line = _one_line_error(fogros("up", str(spec)))
    assert re.search(expected, line), line
