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
    def __init__(self, result: T | None = None, error: BaseException | None = None) -> None:
        self.result = result
        self.error = error


def stream_in_thread(run: Callable[[Sink], T], name: str = "sleeptime-stream") -> Iterator[str | T]:
    """Run ``run(sink)`` in a thread; yield every piece it sends to ``sink``, then its
    result. If the reader stops early the call still finishes (it is booked like any
    other), its remaining pieces are dropped."""
    pieces: queue.SimpleQueue[str | _Done[T]] = queue.SimpleQueue()

    def work() -> None:
        try:
            pieces.put(_Done(result=run(pieces.put)))
        except BaseException as exc:  # handed to the reader, raised there
            pieces.put(_Done(error=exc))

    threading.Thread(target=work, name=name, daemon=True).start()
    while True:
        item = pieces.get()
        if isinstance(item, _Done):
            if item.error is not None:
                raise item.error
            assert item.result is not None
            yield item.result
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

    def work() -> None:
        try:
            put(_Done(result=run(put)))
        except BaseException as exc:
            put(_Done(error=exc))

    threading.Thread(target=work, name=name, daemon=True).start()
    while True:
        item = await pieces.get()
        if isinstance(item, _Done):
            if item.error is not None:
                raise item.error
            assert item.result is not None
            yield item.result
            return
        yield item
