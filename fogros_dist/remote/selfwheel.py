"""A wheel of the robot's own fogros_dist, so a host runs exactly the code the robot runs.

Built directly from the package's files (a pure-Python wheel is a zip with a little metadata),
which takes milliseconds, needs no build backend or index, and writes nothing into the source
tree. The version carries a hash of the contents as a local label (``0.1.0+g1a2b3c4d5e6f``), and the
zip's timestamps are fixed, so the same code always gives the same wheel, file name and key.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import fogros_dist
from fogros_dist.errors import ProvisionError

__all__ = ["SelfWheel", "build_self_wheel", "package_files"]

_DIST = "fogros_dist"
_EPOCH = (1980, 1, 1, 0, 0, 0)
_SKIP_DIRS = {"__pycache__"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}


@dataclass(frozen=True, kw_only=True)
class SelfWheel:
    """fogros_dist as a wheel file in the robot's cache; ``key`` is its content hash."""

    path: Path
    key: str

    @property
    def filename(self) -> str:
        """The wheel's file name."""
        return self.path.name


def package_files() -> list[tuple[str, bytes]]:
    """(path inside the wheel, bytes) of every file of the fogros_dist package, sorted."""
    root = Path(fogros_dist.__file__).resolve().parent
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root.parent)
        if not path.is_file() or _SKIP_DIRS & set(rel.parts) or path.suffix in _SKIP_SUFFIXES:
            continue
        files.append((rel.as_posix(), path.read_bytes()))
    return files


def build_self_wheel(*, cache_dir: Path) -> SelfWheel:
    """Build (or find in ``cache_dir/self``) the wheel of the fogros_dist this robot runs.

    Raises:
        ProvisionError: fogros_dist's metadata (its entry points) is not installed.
    """
    files = package_files()
    entry_points = _entry_points()
    digest = hashlib.sha256(entry_points.encode())
    for name, data in files:
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    key = digest.hexdigest()
    version = f"{fogros_dist.__version__}+g{key[:12]}"
    path = cache_dir / "self" / f"{_DIST}-{version}-py3-none-any.whl"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # One partial per writer: a fleet provisions its machines in parallel threads (and two
        # robots' processes may share the cache); the rename is atomic and the contents identical.
        partial = path.with_name(f"{path.name}.partial-{os.getpid()}-{threading.get_ident()}")
        _write_wheel(partial, files, version, entry_points)
        partial.replace(path)
    return SelfWheel(path=path, key=key)


def _entry_points() -> str:
    try:
        text = metadata.distribution(_DIST).read_text("entry_points.txt")
    except metadata.PackageNotFoundError:
        text = None
    if not text:
        msg = (
            "fogros_dist's package metadata (its entry points) is not installed on this robot: "
            "install it ('pip install -e .' in the checkout) so hosts get the same node executables"
        )
        raise ProvisionError(msg)
    return text


def _write_wheel(path: Path, files: list[tuple[str, bytes]], version: str, entry_points: str) -> None:
    dist_info = f"{_DIST}-{version}.dist-info"
    meta = (
        "Metadata-Version: 2.1\n"
        f"Name: {_DIST}\n"
        f"Version: {version}\n"
        "Summary: fogros_dist, as pushed from a robot\n"
        "Requires-Python: >=3.10\n"
    )
    wheel = (
        "Wheel-Version: 1.0\n"
        "Generator: fogros_dist.remote.selfwheel\n"
        "Root-Is-Purelib: true\n"
        "Tag: py3-none-any\n"
    )
    contents = [
        *files,
        (f"{dist_info}/METADATA", meta.encode()),
        (f"{dist_info}/WHEEL", wheel.encode()),
        (f"{dist_info}/entry_points.txt", entry_points.encode()),
        (f"{dist_info}/top_level.txt", f"{_DIST}\n".encode()),
    ]
    record = [f"{name},sha256={_urlsafe_digest(data)},{len(data)}" for name, data in contents]
    record.append(f"{dist_info}/RECORD,,")
    contents.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode()))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in contents:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)


def _urlsafe_digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")
