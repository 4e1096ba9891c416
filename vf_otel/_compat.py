"""Every use of OpenTelemetry SDK/API internals lives here (design §1).

The handler buffers on the SDK's generic ``BatchProcessor`` (bounded deque,
worker thread, re-initialised after fork, flushed on size or interval) rather
than on the full OTel log pipeline, which costs 5-6x more per record. That class
is private, so this module pins down exactly what is used — its constructor,
``shutdown``, ``_queue``, ``_worker_awaken`` and ``_export_lock`` — for the versions that
pyproject.toml allows; .ci/run tests the oldest and the newest.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

import opentelemetry.sdk._logs.export as _logs_export
from opentelemetry.context import (
    _SUPPRESS_HTTP_INSTRUMENTATION_KEY,
    _SUPPRESS_INSTRUMENTATION_KEY,
    attach,
    detach,
    get_current,
    set_value,
)
from opentelemetry.sdk._shared_internal import BatchProcessor

__all__ = ["EventBuffer", "LogExportResult", "LogExporterBase", "suppressed_instrumentation"]

T = TypeVar("T")
THREAD_LABEL: Final = "Vibefollow"
# 1.42 added a required ``metrics`` argument to BatchProcessor.
_TAKES_METRICS: Final = "metrics" in inspect.signature(BatchProcessor.__init__).parameters

# 1.39 renamed the log exporter base class and its result enum; the old names stay
# as deprecated aliases (which warn when subclassed), so prefer the new ones.
if TYPE_CHECKING:
    from opentelemetry.sdk._logs.export import LogRecordExporter as LogExporterBase
    from opentelemetry.sdk._logs.export import LogRecordExportResult as LogExportResult
else:
    LogExporterBase = getattr(_logs_export, "LogRecordExporter", None) or _logs_export.LogExporter
    LogExportResult = (
        getattr(_logs_export, "LogRecordExportResult", None) or _logs_export.LogExportResult
    )
# Before 1.36 shutdown() joined the worker with no timeout. That is still bounded
# here: the pipeline caps every delivery at the shutdown deadline, so the worker's
# last exports park their events at once instead of retrying.
_SHUTDOWN_TAKES_TIMEOUT: Final = (
    "timeout_millis" in inspect.signature(BatchProcessor.shutdown).parameters
)


@contextlib.contextmanager
def suppressed_instrumentation() -> Iterator[None]:
    """Run the block untraced: vf-otel's own HTTP requests must not become spans."""
    ctx = set_value(_SUPPRESS_INSTRUMENTATION_KEY, True, get_current())
    token = attach(set_value(_SUPPRESS_HTTP_INSTRUMENTATION_KEY, True, ctx))
    try:
        yield
    finally:
        detach(token)


class _NoMetrics:
    """Accepts every signature the SDK's processor-metrics hooks have had (1.42-1.45)."""

    def register_queue_size(self, *args: Any, **kwargs: Any) -> None:
        """Ignored: vf-otel reports its own queue length in ``stats()``."""

    def drop_items(self, *args: Any, **kwargs: Any) -> None:
        """Ignored: EventBuffer never lets the processor drop (it checks first)."""

    def finish_items(self, *args: Any, **kwargs: Any) -> None:
        """Ignored: delivery counts outcomes itself."""


class _Sink(Generic[T]):
    """The processor's exporter: hands each batch to a callback."""

    def __init__(self, export: Callable[[list[T]], object]) -> None:
        self._export = export

    def export(self, batch: list[T], /) -> None:
        self._export(batch)

    def shutdown(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to do: the pipeline closes delivery itself after the last export."""


class EventBuffer(Generic[T]):
    """A bounded queue drained by a worker thread, on the SDK's BatchProcessor.

    Unlike the processor alone, a full queue refuses the *new* item and says so
    (the processor would silently evict the oldest), so every drop is counted.
    """

    def __init__(
        self,
        export: Callable[[list[T]], object],
        *,
        max_queue_size: int,
        batch_size: int,
        schedule_delay: float,
    ) -> None:
        self._sink: _Sink[T] = _Sink(export)
        self._max_queue_size = max_queue_size
        self._batch_size = batch_size
        kwargs: dict[str, Any] = {}
        if _TAKES_METRICS:
            kwargs["metrics"] = _NoMetrics()
        self._processor: BatchProcessor[T] = BatchProcessor(
            self._sink,
            schedule_delay_millis=schedule_delay * 1000,
            max_export_batch_size=batch_size,
            export_timeout_millis=30_000,
            max_queue_size=max_queue_size,
            exporting=THREAD_LABEL,
            **kwargs,
        )
        # Makes "is there room" and "append" one step, so the deque never evicts.
        self._put_lock = threading.Lock()
        self._closed = False

    def __len__(self) -> int:
        return len(self._processor._queue)

    def put(self, item: T) -> str | None:
        """Queue ``item``; None when queued, else the drop reason.

        Does what the processor's ``emit`` does, minus its per-item ``os.getpid()``
        fork check (a system call, a third of this method's cost): the processor
        already re-initialises itself in a forked child through its own
        ``os.register_at_fork`` hook (SDK 1.34-1.45), and ``_closed`` stands for
        its ``_shutdown`` check. Attributes are read each time: the fork hook
        replaces ``_queue``'s contents and ``_worker_awaken``.
        """
        processor = self._processor
        with self._put_lock:
            if self._closed:
                return "shutdown"
            queue = processor._queue
            if len(queue) >= self._max_queue_size:
                return "queue_full"
            queue.appendleft(item)  # the worker pops the oldest from the right
            if len(queue) >= self._batch_size:
                awaken = processor._worker_awaken
                if not awaken.is_set():
                    awaken.set()
        return None

    def after_fork(self) -> None:
        """In a forked child: a fresh lock (the processor re-initialises itself)."""
        self._put_lock = threading.Lock()

    def drain(self, deadline: float) -> bool:
        """Export what is queued, in this thread, until empty or ``deadline`` (monotonic)."""
        lock = self._processor._export_lock
        if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return False
        try:
            queue = self._processor._queue
            while queue and time.monotonic() < deadline:
                # The oldest items are at the right (the processor appends left).
                batch = [queue.pop() for _ in range(min(self._batch_size, len(queue)))]
                self._sink.export(batch)
            return not queue
        finally:
            lock.release()

    def shutdown(self, timeout: float) -> list[T]:
        """Let the worker export what is queued, stop it, and return what it could not."""
        with self._put_lock:
            self._closed = True
        if _SHUTDOWN_TAKES_TIMEOUT:
            self._processor.shutdown(timeout_millis=max(0, int(timeout * 1000)))
        else:
            self._processor.shutdown()
        # On SDK < 1.36 a worker that outlived the join may still pop: pop defensively.
        queue, left = self._processor._queue, []
        while True:
            try:
                left.append(queue.pop())
            except IndexError:
                return left
