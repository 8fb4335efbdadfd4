"""A new model for a node that is already serving, without restarting it.

The robot puts the model file into the node's files directory on its machine (any provider's
``upload``), under a name of its own version, ``models/<stem>-<version><suffix>``, and only then
the pointer ``model.json`` naming it, its version and its metrics. Uploads are not atomic on every
provider, but the pointer is written last and is small, so a node that reads a complete pointer
finds a complete model behind it; a torn pointer is only a parse error, read again next time.

The node checks the pointer between requests (at most once a second: one ``stat``), loads what it
names with its own loader (which validates the file), swaps it in, and says so in its log with the
old and the new version. A model that fails to load is one error line; the node keeps serving the
one it has.

A version is the first 12 hex digits of the file's SHA-256: the same file is the same version on
every machine, whoever made it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["POINTER", "ModelWatcher", "ServedModel", "describe", "model_version", "publish_model"]

POINTER = "model.json"
MODELS_DIR = "models"
_CHECK_EVERY_S = 1.0


def model_version(path: Path) -> str:
    """The model file's version: the first 12 hex digits of its SHA-256."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


@dataclass(frozen=True, kw_only=True)
class ServedModel:
    """What the pointer says: the file (relative to the files directory), version, metrics."""

    file: str
    version: str
    metrics: dict[str, float]

    def to_json(self) -> str:
        """The pointer's text."""
        return json.dumps(
            {"file": self.file, "version": self.version, "metrics": self.metrics}, sort_keys=True
        )

    @classmethod
    def from_json(cls, text: str) -> ServedModel:
        """Parse a pointer; ValueError if it is not one (torn, or foreign)."""
        data = json.loads(text)
        file, version = data.get("file"), data.get("version")
        if not isinstance(file, str) or not isinstance(version, str) or Path(file).is_absolute():
            msg = f"{POINTER} does not name a model file and version: {text[:80]!r}"
            raise ValueError(msg)
        if ".." in Path(file).parts:
            msg = f"{POINTER} names {file!r}, outside the node's files directory"
            raise ValueError(msg)
        metrics = data.get("metrics") or {}
        return cls(file=file, version=version, metrics={str(k): float(v) for k, v in dict(metrics).items()})


def publish_model(
    upload: Callable[[Path, str], object], model: Path, *, metrics: Mapping[str, float] | None = None
) -> ServedModel:
    """Hand ``model`` to a serving node: upload the versioned file, then the pointer.

    Args:
        upload: copies a local file to a path relative to the node's files directory on its
            machine (e.g. ``lambda local, name: provider.upload(host, local, f"files/<node>/{name}")``).
        model: the model file on the robot.
        metrics: travel with it (e.g. its held-out accuracy).

    Returns:
        What the pointer now says.
    """
    version = model_version(model)
    served = ServedModel(
        file=f"{MODELS_DIR}/{model.stem}-{version}{model.suffix}",
        version=version,
        metrics=dict(metrics or {}),
    )
    upload(model, served.file)
    with tempfile.TemporaryDirectory(prefix="fogros-model-") as scratch:
        pointer = Path(scratch) / POINTER
        pointer.write_text(served.to_json())
        upload(pointer, POINTER)
    return served


class ModelWatcher:
    """The node's side: notices a new pointer in its files directory (not thread-safe: call it
    from the request path, under the node's own lock).

    Args:
        files_dir: the node's files directory (``$FOGROS_DIST_NODE_FILES``).
        clock: seconds, monotonic.
    """

    def __init__(self, files_dir: Path, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._pointer = files_dir / POINTER
        self._files_dir = files_dir
        self._clock = clock
        self._checked = -_CHECK_EVERY_S
        self._seen: tuple[int, int] | None = self._stamp()  # a pointer already there was shipped
        self.current: ServedModel | None = None

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self._pointer)
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def poll(self) -> tuple[Path, ServedModel] | None:
        """The model file and pointer when the pointer changed since the last call that
        returned one (checked at most once a second); else None."""
        now = self._clock()
        if now - self._checked < _CHECK_EVERY_S:
            return None
        self._checked = now
        stamp = self._stamp()
        if stamp is None or stamp == self._seen:
            return None
        try:
            served = ServedModel.from_json(self._pointer.read_text())
        except (OSError, ValueError):
            return None  # torn or mid-upload: read again next time
        self._seen = stamp
        return self._files_dir / served.file, served

    def loaded(self, served: ServedModel) -> None:
        """Record that ``served`` is the model now in use."""
        self.current = served


def describe(served: ServedModel | None, metrics: Mapping[str, Any]) -> str:
    """``version 1a2b3c4d5e6f, held-out accuracy 0.912`` for a log line."""
    parts = [f"version {served.version}"] if served is not None else []
    accuracy = metrics.get("heldout_accuracy")
    if isinstance(accuracy, int | float):
        parts.append(f"held-out accuracy {accuracy:.3f}")
    return ", ".join(parts)
