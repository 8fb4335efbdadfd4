"""Progress events of the deployment engine: which step, for which machine, since when."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Reporter", "Stage"]


@dataclass(frozen=True, kw_only=True)
class Stage:
    """A progress event: which step, for which machine, and how long since the operation began."""

    stage: str
    machine: str
    message: str
    elapsed: float

    def line(self) -> str:
        """The event as one status line."""
        return f"[{self.elapsed:6.1f}s] {self.stage:<12} {self.machine:<10} {self.message}"


Reporter = Callable[[Stage], None]
