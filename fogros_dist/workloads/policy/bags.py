"""Finding and opening a user's rosbag2 bags, read only, with one-line errors.

A bag is a directory holding ``metadata.yaml`` and its storage files (mcap or sqlite3).
Everything here only reads: ``rosbags`` opens sqlite3 storage ``immutable`` and mcap as a plain
file, so a folder of recordings keeps its names, sizes and times. Whatever is wrong with a bag
(unparsable or incomplete ``metadata.yaml``, missing storage files) is one line naming the bag,
the problem and the fix, never the YAML parser's multi-line report or a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fogros_dist.errors import ConfigError

if TYPE_CHECKING:
    from rosbags.rosbag2 import Reader

__all__ = ["bag_topics", "find_bags", "one_line", "open_bag"]

# Storage files that `ros2 bag record` writes next to metadata.yaml.
_STORAGE_SUFFIXES = (".mcap", ".db3")
# What rosbags needs under rosbag2_bagfile_information (rosbag2 writes them all).
_METADATA_KEYS = (
    "version",
    "storage_identifier",
    "relative_file_paths",
    "duration",
    "starting_time",
    "message_count",
    "topics_with_message_count",
)


def one_line(text: str) -> str:
    """``text`` with its line breaks and runs of spaces folded into single spaces."""
    return " ".join(text.split())


def find_bags(bag_dir: Path) -> list[Path]:
    """The rosbag2 bags (directories with ``metadata.yaml``) directly under ``bag_dir``, sorted.

    Raises:
        ConfigError: there are none; the message says what is there instead (one bag rather
            than a folder of them, storage files whose ``metadata.yaml`` is missing).
    """
    none = f"no rosbag2 bags (directories with metadata.yaml) in {bag_dir}"
    if not bag_dir.is_dir():
        what = "it does not exist" if not bag_dir.exists() else "it is not a folder"
        msg = f"{none}: {what}; pass the folder holding your bags (one folder each)"
        raise ConfigError(msg)
    if (bag_dir / "metadata.yaml").is_file():
        msg = (
            f"{none}: it is one bag itself; pass the folder holding it ({bag_dir.parent}), "
            "with at least two bags to hold one out"
        )
        raise ConfigError(msg)
    entries = sorted(bag_dir.iterdir())
    bags = [p for p in entries if (p / "metadata.yaml").is_file()]
    if bags:
        return bags
    orphans = [p for p in entries if p.is_dir() and any(f.suffix in _STORAGE_SUFFIXES for f in p.iterdir())]
    if orphans:
        msg = (
            f"{none}: {orphans[0].name} holds storage files but no metadata.yaml; "
            f"rebuild it with `ros2 bag reindex {orphans[0]}`"
        )
    else:
        msg = (
            f"{none}: point --bag-dir at the folder holding them, "
            "or try the project's own demonstrations with --record-demo DIR"
        )
    raise ConfigError(msg)


def _metadata_problem(bag: Path) -> str | None:
    """What is wrong with ``bag/metadata.yaml`` as YAML, in a few words, or None."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    path = bag / "metadata.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return "metadata.yaml is not UTF-8 text"
    except OSError as err:
        return f"metadata.yaml cannot be read ({err.strerror or type(err).__name__})"
    try:
        document: Any = YAML(typ="safe").load(text)
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or type(err).__name__
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        return f"metadata.yaml is not valid YAML{where} ({one_line(str(problem))})"
    info = document.get("rosbag2_bagfile_information") if isinstance(document, dict) else None
    if not isinstance(info, dict):
        return "metadata.yaml has no rosbag2_bagfile_information table"
    missing = [key for key in _METADATA_KEYS if key not in info]
    if missing:
        return f"metadata.yaml lacks {', '.join(missing)}"
    return None


def _fix(bag: Path) -> str:
    return (
        f"restore it from the recording or rebuild it with `ros2 bag reindex {bag}`, "
        f"or move the bag out of {bag.parent}"
    )


@contextmanager
def open_bag(bag: Path) -> Iterator[Reader]:
    """Open ``bag`` for reading.

    Raises:
        ConfigError: ``metadata.yaml`` does not parse or lacks what rosbag2 writes, or the
            storage cannot be opened; one line naming the bag, the problem and the fix.
    """
    from rosbags.rosbag2 import Reader

    problem = _metadata_problem(bag)
    if problem is not None:
        msg = f"bag {bag}: {problem}: {_fix(bag)}"
        raise ConfigError(msg)
    try:
        reader = Reader(bag)
        reader.open()
    except Exception as err:  # rosbags raises ReaderError, PermissionError and decoder errors
        reason = one_line(str(err)).rstrip(".") or type(err).__name__
        msg = f"bag {bag} cannot be opened ({reason}): {_fix(bag)}"
        raise ConfigError(msg) from err
    try:
        yield reader
    finally:
        reader.close()


def bag_topics(bag: Path) -> dict[str, str]:
    """``{topic: message type}`` of what ``bag`` records.

    Raises:
        ConfigError: as :func:`open_bag`.
    """
    with open_bag(bag) as reader:
        return {c.topic: c.msgtype for c in reader.connections}
