"""A thread that makes blocking Kafka calls, and knows how long the current one has run.

The runtime makes every consumer call on one such thread (the consumer thread) and, in
exactly-once mode, every transaction call on another, so the event loop never blocks on
librdkafka. The thread is a daemon and never joined at exit: a call that librdkafka never
returns from (send_offsets_to_transaction can ignore its own timeout) must not keep a
stopping process alive. It is a ``concurrent.futures.Executor``, so the loop's
``run_in_executor`` can use it.

:attr:`KafkaThread.blocked_for` says how long the call running now has been inside the
client: what ``/healthz`` and ``pipeline_kafka_call_blocked_seconds`` report. Time spent
in the runtime's own rebalance callbacks (which librdkafka calls from inside ``consume``)
does not count: :meth:`KafkaThread.in_callback` pauses the clock while the runtime, not
librdkafka, holds the thread (draining, restoring state).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_Item = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]
_THREADS: weakref.WeakSet[KafkaThread] = weakref.WeakSet()


def stuck_calls() -> list[str]:
    """The threads of this process with a Kafka call still running after they were shut
    down: calls the client never returned from."""
    return [t.name for t in list(_THREADS) if t.is_shut_down and t.is_stuck]


class KafkaThread(Executor):
    """One daemon thread running submitted calls in order."""

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.clock = clock
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._shutdown = False
        # When the call running now entered the client (None: idle, or in a callback).
        self._since: float | None = None
        self._callbacks = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        _THREADS.add(self)

    @property
    def is_shut_down(self) -> bool:
        return self._shutdown

    @property
    def is_stuck(self) -> bool:
        """A call is running (its thread still alive) and inside the client."""
        return self._thread.is_alive() and self._since is not None

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        if self._shutdown:
            raise RuntimeError(f"{self.name} is shut down")
        future: Future[T] = Future()
        self._queue.put((future, fn, args, kwargs))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking calls; with ``wait``, wait for the thread unless a call is stuck
        (then it is left behind, a daemon)."""
        if not self._shutdown:
            self._shutdown = True
            self._queue.put(None)
        if wait:
            self._thread.join(timeout=0.0 if self._since is not None else 1.0)

    @property
    def blocked_for(self) -> float:
        """Seconds the running call has been inside the client (0 when idle)."""
        since = self._since
        return 0.0 if since is None else max(0.0, self.clock() - since)

    @property
    def in_runtime_callback(self) -> bool:
        """Whether the runtime's own code holds the thread now (see :meth:`in_callback`)."""
        return self._callbacks > 0

    @contextlib.contextmanager
    def in_callback(self) -> Iterator[None]:
        """While the runtime's own code holds the thread inside a client call."""
        since = self._since
        self._callbacks += 1
        self._since = None
        try:
            yield
        finally:
            self._callbacks -= 1
            if since is not None and not self._callbacks:
                self._since = self.clock()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            self._since = self.clock()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                self._since = None  # before the caller hears of it: the call is over
                future.set_exception(exc)
            else:
                self._since = None
                future.set_result(result)
