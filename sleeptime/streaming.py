"""Turn a call that reports text through a callback into an iterator of its pieces.

The online path produces an answer in a worker thread and hands each piece of text to
a sink; a reader (an HTTP response, a UI) wants to iterate. A queue joins the two, so
the reader never waits on more than the next piece, and an error in the producer is
raised in the reader, after the pieces sent before it.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

#: Sends one piece of text to the reader.
Sink = Callable[[str], None]


class _Done(Generic[T]):
    """The end of a stream: the call's result, or the error it raised."""

    def __init__(self, result: T | None = None, error: BaseException | None = None) -> None:
        self.result = result
        self.error = error

    def unwrap(self) -> T:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def _producer(run: Callable[[Sink], T], put: Callable[[str | _Done[T]], None]) -> None:
    try:
        put(_Done(result=run(put)))
    except BaseException as exc:  # handed to the reader, raised there
        put(_Done(error=exc))


def stream_in_thread(run: Callable[[Sink], T], name: str = "sleeptime-stream") -> Iterator[str | T]:
    """Run ``run(sink)`` in a thread; yield every piece it sends to ``sink``, then its
    result. If the reader stops early the call still finishes (it is booked like any
    other), its remaining pieces are dropped."""
    pieces: queue.SimpleQueue[str | _Done[T]] = queue.SimpleQueue()
    threading.Thread(target=_producer, args=(run, pieces.put), name=name, daemon=True).start()
    while True:
        item = pieces.get()
        if isinstance(item, _Done):
            yield item.unwrap()
            return
        yield item


async def astream_in_thread(
    run: Callable[[Sink], T], name: str = "sleeptime-stream"
) -> AsyncIterator[str | T]:
    """:func:`stream_in_thread` for an event loop: the reader awaits, never blocks."""
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[str | _Done[T]] = asyncio.Queue()

    def put(item: str | _Done[T]) -> None:
        loop.call_soon_threadsafe(pieces.put_nowait, item)

    threading.Thread(target=_producer, args=(run, put), name=name, daemon=True).start()
    while True:
        item = await pieces.get()
        if isinstance(item, _Done):
            yield item.unwrap()
            return
        yield item
