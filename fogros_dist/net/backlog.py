"""A bounded FIFO of messages waiting for the link, with the drop policy of the topic's QoS.

A reliable topic keeps what it has and refuses the newest message once the backlog is full (what
arrives is then a gap-free prefix, and the sender's ``dropped_backlog`` says how many did not
fit). A best-effort topic evicts the oldest to make room, so what waits is always the freshest.
Both limits hold: a number of messages and a number of bytes; a single message larger than the
byte limit is still accepted into an empty backlog (it is within the bridge's message size
limit, which is checked before).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

from fogros_dist.errors import ConfigError

__all__ = ["Backlog", "BacklogLimits"]

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class BacklogLimits:
    """How much may wait, and which message goes when that is exceeded."""

    max_messages: int
    max_bytes: int
    evict_oldest: bool

    def __post_init__(self) -> None:
        if self.max_messages < 1 or self.max_bytes < 1:
            msg = (
                f"backlog limits {self.max_messages} messages / {self.max_bytes} bytes are too "
                "small: allow at least one message of one byte"
            )
            raise ConfigError(msg)


class Backlog(Generic[T]):
    """Messages waiting to be sent, oldest first; not thread-safe (the caller holds its lock)."""

    def __init__(self, limits: BacklogLimits) -> None:
        self.limits = limits
        self._items: deque[tuple[T, int]] = deque()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """The bytes waiting."""
        return self._bytes

    def push(self, item: T, nbytes: int) -> int:
        """Queue ``item`` (``nbytes`` long); returns how many messages this dropped (the item
        itself when refused, or the oldest ones evicted for it)."""
        limits = self.limits
        if not self._items:
            self._append(item, nbytes)
            return 0
        fits = len(self._items) < limits.max_messages and self._bytes + nbytes <= limits.max_bytes
        if fits:
            self._append(item, nbytes)
            return 0
        if not limits.evict_oldest:
            return 1
        dropped = 0
        while self._items and (
            len(self._items) >= limits.max_messages or self._bytes + nbytes > limits.max_bytes
        ):
            self.pop()
            dropped += 1
        self._append(item, nbytes)
        return dropped

    def peek(self) -> T:
        """The oldest item, left in place.

        Raises:
            IndexError: the backlog is empty.
        """
        return self._items[0][0]

    def pop(self) -> T | None:
        """The oldest item, removed; None when empty."""
        if not self._items:
            return None
        item, nbytes = self._items.popleft()
        self._bytes -= nbytes
        return item

    def _append(self, item: T, nbytes: int) -> None:
        self._items.append((item, nbytes))
        self._bytes += nbytes
