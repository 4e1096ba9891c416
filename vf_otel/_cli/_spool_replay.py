"""``vf-otel spool replay``: send what the spool holds now, through the library's delivery.

The requests go out exactly as the app would send them (same Idempotency-Key, same
bytes, same retries and circuit breaker), and rows are claimed with a lease, so an app
replaying the same file at the same time never sends a row this command holds.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from types import TracebackType
from typing import Final, TextIO

from .._config import Settings
from .._delivery.delivery import Delivery
from .._delivery.stats import Counters
from .._errors import VibefollowError
from .._spool.store import Spool, SpoolSummary
from ._exit import ExitCode
from ._send import warning_reason
from ._settings import captured_records
from ._spool_access import Stop, fail, lease_text, resolve_spool_settings

__all__ = ["run_replay"]

#: Seconds between looks at rows another process holds (they may be released or sent).
POLL_INTERVAL: Final = 0.2
#: Seconds between progress lines (printed only when something was sent meanwhile).
PROGRESS_INTERVAL: Final = 0.5
_DOCTOR_HINT: Final = "Run `vf-otel doctor` to find out why."


class _RequestCounters(Counters):
    """The delivery's counters, plus accepted requests (a batch adds to ``sent`` once)."""

    __slots__ = ("_requests",)

    def __init__(self) -> None:
        super().__init__()
        self._requests = 0

    def add(self, name: str, count: int = 1) -> None:
        super().add(name, count)
        if name in ("sent", "users_sent"):
            with self._lock:
                self._requests += 1

    def progress(self) -> str:
        """``3 request(s) sent (1200 events, 1 user upserts)``."""
        stats = self.snapshot()
        with self._lock:
            requests = self._requests
        return f"{requests} request(s) sent ({stats.sent} events, {stats.users_sent} user upserts)"


class _Progress:
    """Prints the counters every PROGRESS_INTERVAL while a replay runs, when they changed."""

    def __init__(self, counters: _RequestCounters, stream: TextIO) -> None:
        self._counters = counters
        self._stream = stream
        self._stop = threading.Event()
        self._shown = counters.progress()
        self._thread = threading.Thread(target=self._run, name="vf-otel-replay", daemon=True)

    def __enter__(self) -> _Progress:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._show()

    def _run(self) -> None:
        while not self._stop.wait(PROGRESS_INTERVAL):
            self._show()

    def _show(self) -> None:
        now = self._counters.progress()
        if now != self._shown:
            self._shown = now
            print(f"  {now}", file=self._stream, flush=True)


def run_replay(args: argparse.Namespace) -> int:
    """Send the spool's requests; exit 0 only when the spool is empty at the end."""
    explicit = {
        "spool_path": args.spool_path,
        "api_key": args.api_key,
        "base_url": args.base_url,
        "allow_insecure_http": args.allow_insecure_http,
        "export_timeout": args.timeout,
    }
    secret = args.api_key
    try:
        settings = resolve_spool_settings(explicit)
        secret = settings.api_key
        return _replay(settings)
    except Stop as stop:
        return fail("replay", stop, secret=secret)


def _replay(settings: Settings) -> int:
    if settings.api_key is None:
        raise Stop(ExitCode.NO_API_KEY, "not replayed: no API key; set VIBEFOLLOW_API_KEY")
    counters = _RequestCounters()
    refused: list[VibefollowError] = []
    with captured_records("vf_otel") as records:
        delivery = Delivery(settings, counters, on_error=lambda error, _: refused.append(error))
        try:
            spool = _usable(delivery.spool, [r.getMessage() for r in records])
            start = _summary(spool)
            print(
                f"replaying {start.rows} request(s) ({start.events} events, "
                f"{start.user_upserts} user upserts) from {spool.path} to {settings.base_url}",
                flush=True,
            )
            with _Progress(counters, sys.stdout):
                _drain(delivery, spool, settings.export_timeout)
            left = _summary(spool)
            # Taken before close(), which logs about what is still parked.
            reasons = list(dict.fromkeys(warning_reason(record) for record in records))
        finally:
            delivery.close()
    _report_refused(refused, counters.snapshot().dead_lettered)
    if left.rows == 0:
        print(f"done: {counters.progress()}; the spool is empty", flush=True)
        return ExitCode.OK
    return _not_done(left, reasons, settings.export_timeout)


def _usable(spool: Spool | None, errors: list[str]) -> Spool:
    if spool is None or not spool.usable:
        raise Stop(ExitCode.FAILED, errors[0] if errors else "cannot open the spool")
    return spool


def _summary(spool: Spool) -> SpoolSummary:
    summary = spool.summary()
    if summary is None:
        raise Stop(ExitCode.FAILED, f"{spool.path}: cannot read the spool")
    return summary


def _drain(delivery: Delivery, spool: Spool, timeout: float) -> None:
    """Replay until the spool is empty, sending is held back, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        done = delivery.retry_parked(max(0.0, deadline - time.monotonic()))
        remaining = deadline - time.monotonic()
        if spool.pending() == 0 or not done or remaining <= 0:
            return
        # What is left is leased by other processes (or was spooled meanwhile): they
        # send it or release it; look again shortly.
        time.sleep(min(POLL_INTERVAL, remaining))


def _report_refused(refused: list[VibefollowError], events: int) -> None:
    if refused:
        print(
            f"warning: the server refused {events} event(s) for good (not retried, removed "
            f"from the spool): {refused[0]}",
            file=sys.stderr,
            flush=True,
        )


def _not_done(left: SpoolSummary, reasons: list[str], timeout: float) -> int:
    what = f"{left.rows} request(s) ({left.events} events) still in the spool"
    if reasons:
        raise Stop(ExitCode.FAILED, f"not done: {what}: {'; '.join(reasons)}", _DOCTOR_HINT)
    if left.leases:
        leased = lease_text(left.leases, left.taken_at)
        raise Stop(ExitCode.FAILED, f"not done: {what}; leased by other processes: {leased}")
    raise Stop(ExitCode.FAILED, f"not done: {what}: no time left (--timeout {timeout:g} s)")
