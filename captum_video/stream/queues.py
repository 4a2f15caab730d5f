"""The bounded hand-over between a stream's reader and its explainer.

A window waits here between being formed and being explained. In real time the queue never
blocks the reader: when it is full, the oldest waiting window is dropped (it is the stalest,
and a live source does not wait), so the explainer always takes the newest windows and the
stream never falls behind its source. Otherwise the reader waits for room, and every window
is explained.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

__all__ = ["END", "POLL_SECONDS", "WindowQueue"]

#: Put last into a queue between a stream's threads: no more items come.
END = object()
#: Seconds a stream's thread waits on a queue before it checks the stop flag again.
POLL_SECONDS = 0.1

Item = TypeVar("Item")


class WindowQueue(Generic[Item]):
    r"""A bounded FIFO between one producer and one consumer thread, with a drop-oldest put.

    Args:
        capacity (int): items it holds at most, ``>= 1``.

    Returns:
        A queue; :meth:`close` says no more items come.

    Example::

        >>> queue = WindowQueue(1)
        >>> queue.put("a", drop_oldest=True)
        []
        >>> queue.put("b", drop_oldest=True)
        ['a']
        >>> queue.close()
        >>> queue.get_many(4), queue.get_many(4)
        (['b'], None)
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._items: deque[Item] = deque()
        self._changed = threading.Condition()
        self._closed = False

    def put(self, item: Item, drop_oldest: bool, stop: threading.Event | None = None) -> list[Item]:
        """Add ``item``; when full, drop the oldest items (``drop_oldest``) or wait for room.

        Args:
            item: the item.
            drop_oldest (bool): never wait: make room by dropping the oldest items.
            stop (threading.Event, optional): while waiting for room, give up once it is set.

        Returns:
            list: the items that did not get through: the dropped oldest ones, or ``[item]``
            when waiting was given up (``stop`` set) or the queue is closed.
        """
        with self._changed:
            if self._closed:
                return [item]
            dropped: list[Item] = []
            while len(self._items) >= self.capacity:
                if drop_oldest:
                    dropped.append(self._items.popleft())
                    continue
                if self._closed or (stop is not None and stop.is_set()):
                    return [item]
                self._changed.wait(0.05)
            self._items.append(item)
            self._changed.notify_all()
            return dropped

    def get_many(self, most: int, timeout: float | None = None) -> list[Item] | None:
        """Take up to ``most`` items, waiting for at least one.

        Args:
            most (int): the most items taken.
            timeout (float, optional): seconds to wait; ``[]`` when none came in time.

        Returns:
            list or None: the items, oldest first; None once the queue is closed and empty.
        """
        with self._changed:
            if not self._items and not self._closed:
                self._changed.wait_for(lambda: self._items or self._closed, timeout)
            if not self._items:
                return None if self._closed else []
            taken = [self._items.popleft() for _ in range(min(most, len(self._items)))]
            self._changed.notify_all()
            return taken

    def drain(self) -> list[Item]:
        """Remove and return every waiting item."""
        with self._changed:
            items = list(self._items)
            self._items.clear()
            self._changed.notify_all()
            return items

    def close(self) -> None:
        """No more items will be put; a waiting :meth:`get_many` returns."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def __len__(self) -> int:
        with self._changed:
            return len(self._items)
