"""An iterator run in a thread ahead of the loop that consumes it (decoding frames, OpenCV flow):
the work overlaps the frame loop, since what it calls (FFmpeg, OpenCV) releases the GIL."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_END = object()


class Ahead(Generic[T]):
    """Iterates ``items`` in a thread, up to ``depth`` items ahead of the consumer; an error
    raised by ``items`` is raised in the consumer. :meth:`close` stops the thread.

    Args:
        items: the iterator to run ahead (started at once, in the thread).
        depth: how many items may wait for the consumer.
        name: the thread's name.
    """

    def __init__(self, items: Iterator[T], depth: int, name: str) -> None:
        self._q: queue.Queue[Any] = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(items,), name=name, daemon=True)
        self._thread.start()

    def _run(self, items: Iterator[T]) -> None:
        try:
            for item in items:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as exc:  # raised in the consumer
            self._put(exc)

    def _put(self, item: Any) -> bool:
        """Queue ``item`` unless the consumer has stopped listening (then False)."""
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def __iter__(self) -> Iterator[T]:
        while True:
            item = self._q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop the thread (it ends within its current item)."""
        self._stop.set()
        self._thread.join(timeout=10.0)
