"""``vf-otel spool replay``: send what the spool holds now, through the library's delivery.

The requests go out exactly as the app would send them (same Idempotency-Key, same
bytes, same retries and circuit breaker): a ``Pipeline`` on the spool claims its
rows with a lease and sends them from its worker, so an app replaying the same file at
the same time never sends a row this command holds. The command only waits (``flush``)
and reads the outcome as objects: the pipeline's counts and the errors it saw.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Final, TextIO

from .._config import Settings
from .._delivery.pipeline import Pipeline
from .._errors import VibefollowError
from .._spool.store import Spool, SpoolSummary
from ._exit import ExitCode
from ._send import CLOSE_TIMEOUT, failure_reason
from ._settings import quiet_logger
from ._spool_access import Stop, fail, lease_text, open_spool, resolve_spool_settings
from ._terminal import counted

__all__ = ["run_replay"]

#: Seconds between looks at rows another process holds (they may be released or sent).
POLL_INTERVAL: Final = 0.2
#: Seconds between progress lines (printed only when something was sent meanwhile).
PROGRESS_INTERVAL: Final = 0.5
_DOCTOR_HINT: Final = "Run `vf-otel doctor` to find out why."


def _progress(pipeline: Pipeline) -> str:
    """``3 request(s) sent (1200 events, 1 user upsert)``."""
    stats = pipeline.stats()
    return (
        f"{pipeline.ledger.requests_sent} request(s) sent "
        f"({stats.sent} events, {counted(stats.users_sent, 'user upsert')})"
    )


class _Progress:
    """Prints ``progress()`` every PROGRESS_INTERVAL while a replay runs, when it changed."""

    def __init__(self, progress: Callable[[], str], stream: TextIO) -> None:
        self._progress = progress
        self._stream = stream
        self._stop = threading.Event()
        self._shown = progress()
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
        now = self._progress()
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
    if not settings.enabled:
        # The variable turns off every send, this command's too; the rows stay for later.
        raise Stop(
            ExitCode.FAILED,
            "not replayed: delivery is off (VIBEFOLLOW_ENABLED=false); the spool is kept",
            "Unset VIBEFOLLOW_ENABLED (or set it to true) to replay it.",
        )
    if settings.api_key is None:
        raise Stop(ExitCode.NO_API_KEY, "not replayed: no API key; set VIBEFOLLOW_API_KEY")
    with quiet_logger("vf_otel"):
        # The command's own handle on the file reads summaries; it never claims a row.
        spool = open_spool(settings)
        try:
            return _send_spool(settings, spool)
        finally:
            spool.close()


def _send_spool(settings: Settings, spool: Spool) -> int:
    start = _summary(spool)
    print(
        f"replaying {start.rows} request(s) ({start.events} events, "
        f"{counted(start.user_upserts, 'user upsert')}) from {spool.path} to {settings.base_url}",
        flush=True,
    )
    refused: list[VibefollowError] = []
    pipeline = Pipeline(settings, on_error=lambda error, _: refused.append(error))
    try:
        _check_usable(pipeline)
        with _Progress(lambda: _progress(pipeline), sys.stdout):
            _drain(pipeline, spool, settings.export_timeout)
        # Taken before shutdown(), which may report what it could not keep.
        stats, errors, done = pipeline.stats(), tuple(refused), _progress(pipeline)
    finally:
        pipeline.shutdown(CLOSE_TIMEOUT)  # gives back the rows it still holds
    _report_refused(errors, stats.dead_lettered)
    left = _summary(spool)
    if left.rows == 0:
        print(f"done: {done}; the spool is empty", flush=True)
        return ExitCode.OK
    return _not_done(left, pipeline.ledger.last_error, settings.export_timeout)


def _check_usable(pipeline: Pipeline) -> None:
    spool = pipeline.parked.spool
    if spool is None or not spool.usable:
        path = pipeline.settings.spool_path
        raise Stop(ExitCode.FAILED, f"{path}: cannot open the spool")


def _summary(spool: Spool) -> SpoolSummary:
    summary = spool.summary()
    if summary is None:
        raise Stop(ExitCode.FAILED, f"{spool.path}: cannot read the spool")
    return summary


def _drain(pipeline: Pipeline, spool: Spool, timeout: float) -> None:
    """Replay until the spool is empty, sending is held back, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        # The worker claims and sends the spool's free rows; flush waits until none is
        # left to claim, or until it cannot finish in time.
        pipeline.flush(max(0.0, deadline - time.monotonic()))
        remaining = deadline - time.monotonic()
        if spool.pending() == 0 or remaining <= 0 or _held_back(pipeline, remaining):
            return
        # What is left is leased by other processes (or was spooled meanwhile): they
        # send it or release it; look again shortly.
        time.sleep(min(POLL_INTERVAL, remaining))


def _held_back(pipeline: Pipeline, remaining: float) -> bool:
    """Nothing is being sent and the circuit (open, or holding after 401/429) stays shut."""
    return (
        pipeline.stats().in_flight == 0
        and pipeline.circuit.seconds_until_ready() > remaining
        and pipeline.parked.claimable() > 0
    )


def _report_refused(refused: tuple[VibefollowError, ...], events: int) -> None:
    # on_error also hears of drops (status 0); the server's refusals carry its status.
    answer = next((error for error in refused if error.status), None)
    if events and answer is not None:
        print(
            f"warning: the server refused {events} event(s) for good (not retried, removed "
            f"from the spool): {answer}",
            file=sys.stderr,
            flush=True,
        )


def _not_done(left: SpoolSummary, error: VibefollowError | None, timeout: float) -> int:
    what = f"{left.rows} request(s) ({left.events} events) still in the spool"
    free = left.rows - sum(lease.rows for lease in left.leases)
    if free and error is not None:
        raise Stop(ExitCode.FAILED, f"not done: {what}: {failure_reason(error)}", _DOCTOR_HINT)
    if left.leases:
        leased = lease_text(left.leases, left.taken_at)
        raise Stop(ExitCode.FAILED, f"not done: {what}; leased by other processes: {leased}")
    raise Stop(ExitCode.FAILED, f"not done: {what}: no time left (--timeout {timeout:g} s)")
