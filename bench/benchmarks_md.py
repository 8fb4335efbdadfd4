"""A bench script's table in BENCHMARKS.md, between its ``<!-- name:begin -->`` / ``<!-- name:end -->``
markers: replaced where the markers are, else appended after the section's introduction."""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_table"]


def write_table(path: Path, name: str, table: str, intro: str) -> None:
    """Put ``table`` between ``name``'s markers in ``path`` (``intro`` starts a new section)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{table}\n{end}"
    text = path.read_text()
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        path.write_text(head + block + tail)
        return
    path.write_text(text.rstrip() + "\n\n" + intro.strip("\n") + "\n\n" + block + "\n")
