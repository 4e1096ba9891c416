"""Send Events to Vibefollow: one request at a time, retried, never raising.

Outcomes per request: sent; dead-lettered (the server refused it for good,
``on_error`` is told); or parked in a bounded backlog when the deadline, the
retry budget or an auth failure stops it, to be tried first on the next export
with the same key and body. Nothing leaves without being counted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Final

import httpx

from ._config import Settings
from ._errors import (
    AuthError,
    NetworkError,
    RateLimitError,
    ServerError,
    UndeliveredError,
    ValidationError,
    VibefollowError,
)
from ._event import Event
from ._ratelimit import RateLimitedLog
from ._retry import RETRYABLE_STATUSES, RetryPolicy, parse_retry_after
from ._sdk import suppressed_instrumentation
from ._stats import Counters
from ._version import __version__
from ._wire import (
    EVENTS_PATH,
    MAX_EVENT_BYTES,
    USERS_PATH,
    Request,
    encode_event,
    error_detail,
    event_requests,
    events_request,
    failed_event_index,
    user_requests,
)
from .typing import ErrorCallback

__all__ = ["Delivery"]

_logger = logging.getLogger("vf_otel.delivery")
USER_AGENT: Final = (
    f"vf-otel/{__version__} python/{platform.python_version()} httpx/{httpx.__version__}"
)
#: After a 401/403, how long to hold events before probing the key again.
AUTH_PAUSE: Final = 60.0


class _Parked(Exception):  # noqa: N818 - a control-flow signal, not an error
    """A request could not be finished now; it belongs in the backlog."""


class Delivery:
    """Delivers batches of Events; thread-safe; ``export`` never raises."""

    def __init__(
        self,
        settings: Settings,
        counters: Counters,
        *,
        on_error: ErrorCallback | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._counters = counters
        self._on_error = on_error
        self._transport = transport
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._policy = RetryPolicy(settings.max_retries)
        self._log = RateLimitedLog(_logger)
        self._reset_state()

    def _reset_state(self) -> None:
        self._pid = os.getpid()
        self._client: httpx.Client | None = None
        self._cond = threading.Condition()
        self._backlog: deque[Request] = deque()
        self._backlog_weight = 0
        self._caps: dict[object, float] = {}
        self._stopped = False
        self._auth_paused_until = 0.0

    def after_fork(self) -> None:
        """In a forked child: forget the parent's client and backlog (they are the parent's)."""
        self._reset_state()

    # -- public ---------------------------------------------------------------

    def export(self, events: Sequence[Event], timeout: float | None = None) -> bool:
        """Deliver ``events`` and then the backlog; True when nothing is left parked.

        Never raises: a failure is contained to the event or request it concerns,
        which is counted (``unserializable`` / ``internal_error``), never lost silently.
        """
        deadline = self._clock() + (self._settings.export_timeout if timeout is None else timeout)
        with suppressed_instrumentation():
            pending = self._take_backlog() + self._prepare(events)
            self._send_all(pending, deadline)
        return not self._backlog

    @property
    def backlog_size(self) -> int:
        """Events parked for a later attempt."""
        return self._backlog_weight

    @contextlib.contextmanager
    def cap_deadline(self, deadline: float) -> Iterator[None]:
        """Make every delivery in progress or started meanwhile finish by ``deadline``."""
        token = object()  # identity, not id(): a freed object's id is reused at once
        with self._cond:
            self._caps[token] = deadline
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._caps.pop(token, None)

    def close(self) -> None:
        """Stop for good: count what is still parked as dropped and close the client."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        left = self._take_backlog()
        events = [e for r in left for e in r.events if r.path != USERS_PATH]
        if events:
            self._drop("shutdown", events, UndeliveredError("not delivered before shutdown"))
        if self._client is not None and self._pid == os.getpid():
            self._client.close()
        self._client = None

    # -- preparing ------------------------------------------------------------

    def _prepare(self, events: Sequence[Event]) -> list[Request]:
        encoded: list[tuple[Event, bytes]] = []
        for event in events:
            try:
                data = encode_event(event)
            except Exception as exc:  # noqa: BLE001 - one bad event must not sink the batch
                error = ValidationError(f"not serialisable as JSON: {exc}", field="properties")
                self._drop("unserializable", [event], error)
                continue
            if len(data) > MAX_EVENT_BYTES:
                error = ValidationError(
                    f"event is {len(data)} bytes as JSON, over {MAX_EVENT_BYTES}",
                    field="properties",
                )
                self._drop("event_too_large", [event], error)
                continue
            encoded.append((event, data))
        kept = [event for event, _ in encoded]
        return user_requests(kept) + list(event_requests(encoded, self._settings.batch_size))

    # -- sending --------------------------------------------------------------

    def _send_all(self, pending: list[Request], deadline: float) -> None:
        for index, request in enumerate(pending):
            try:
                self._send(request, deadline)
            except _Parked as parked:
                # The endpoint is down, the key refused or time is up: the rest
                # would fare no better now, so all of it waits for the next export.
                # _send may have narrowed the request (poison events removed), and
                # then it is what is left of it that waits.
                current = parked.args[0] if parked.args else request
                for later in [current, *pending[index + 1 :]]:
                    self._park(later)
                return
            except Exception:  # noqa: BLE001 - the exporter contract: never raise
                self._log.log(logging.ERROR, "internal", "vf-otel delivery failed", exc_info=True)
                error = UndeliveredError("internal error in delivery")
                self._drop("internal_error", list(request.events), error)

    def _send(self, request: Request, deadline: float) -> None:
        while True:
            try:
                error = self._attempts(request, deadline)
            except _Parked:
                raise _Parked(request) from None
            if error is None:
                self._count_sent(request)
                return
            index = failed_event_index(getattr(error, "field", None), len(request.events))
            if request.path != EVENTS_PATH or index is None or len(request.events) == 1:
                self._dead_letter(request, error)
                return
            # One poison event: dead-letter it alone, send the rest as a new request.
            self._dead_letter_events([request.events[index]], error)
            rest = [e for i, e in enumerate(request.events) if i != index]
            request = events_request(rest, [encode_event(e) for e in rest])

    def _attempts(self, request: Request, deadline: float) -> VibefollowError | None:
        """None once sent; the final error if refused for good; raises _Parked otherwise."""
        if self._stopped or self._clock() < self._auth_paused_until:
            raise _Parked
        attempt = 0
        while True:
            error = self._post(request, deadline)
            if error is None:
                return None
            if isinstance(error, AuthError):
                self._pause_for_auth(error)
                raise _Parked
            if not _retryable(error):
                return error
            retry_after = getattr(error, "retry_after", None)
            delay = self._policy.delay(attempt, self._rng, retry_after)
            if attempt >= self._settings.max_retries or not self._wait(delay, deadline):
                self._log.warning(
                    "retry", "Vibefollow unreachable (%s); events kept for a later attempt", error
                )
                raise _Parked
            attempt += 1
            self._counters.add("retried")

    def _post(self, request: Request, deadline: float) -> VibefollowError | None:
        remaining = self._effective_deadline(deadline) - self._clock()
        if remaining <= 0:
            return NetworkError("deadline reached before the request was sent")
        try:
            response = self._http().post(
                request.path,
                content=request.body,
                headers={"Idempotency-Key": request.key},
                timeout=min(self._settings.timeout, remaining),
            )
        except httpx.TimeoutException as exc:
            return NetworkError(f"timed out ({type(exc).__name__})")
        except httpx.TransportError as exc:
            return NetworkError(f"{type(exc).__name__}: {exc}")
        if response.is_success:
            return None
        return _error_for(response)

    # -- waiting and deadlines ------------------------------------------------

    def _effective_deadline(self, deadline: float) -> float:
        with self._cond:
            return min([deadline, *self._caps.values()])

    def _wait(self, delay: float, deadline: float) -> bool:
        """Sleep ``delay`` unless that would pass the deadline or close() comes first."""
        wake_at = self._clock() + delay
        with self._cond:
            while not self._stopped:
                limit = min([deadline, *self._caps.values()])
                if wake_at > limit:
                    return False
                remaining = wake_at - self._clock()
                if remaining <= 0:
                    return True
                self._cond.wait(remaining)
            return False

    # -- outcomes -------------------------------------------------------------

    def _count_sent(self, request: Request) -> None:
        if request.path == USERS_PATH:
            self._counters.add("users_sent")
        else:
            self._counters.add("sent", len(request.events))

    def _dead_letter(self, request: Request, error: VibefollowError) -> None:
        if request.path == USERS_PATH:
            self._counters.add("users_failed")
            self._log.warning(
                "user-" + str(error.status), "Vibefollow refused a user upsert: %s", error
            )
            return
        self._dead_letter_events(list(request.events), error)

    def _dead_letter_events(self, events: list[Event], error: VibefollowError) -> None:
        self._counters.add("dead_lettered", len(events))
        self._log.warning(
            f"dead-{error.status}-{error.code}",
            "Vibefollow refused %d event(s) for good: %s",
            len(events),
            _describe(error),
        )
        self.report(error, events)

    def _drop(self, reason: str, events: list[Event], error: VibefollowError) -> None:
        self._counters.drop(reason, len(events))
        self._log.warning(reason, "dropped %d event(s) (%s): %s", len(events), reason, error)
        self.report(error, events)

    def report(self, error: VibefollowError, events: Sequence[Event]) -> None:
        """Tell ``on_error`` about events that will never be delivered; never raises."""
        if self._on_error is None:
            return
        try:
            self._on_error(error, events)
        except Exception:  # noqa: BLE001 - a user callback must not stop delivery
            self._log.log(logging.ERROR, "on_error", "on_error callback raised", exc_info=True)

    def _pause_for_auth(self, error: AuthError) -> None:
        self._auth_paused_until = self._clock() + AUTH_PAUSE
        self._log.error(
            "auth",
            "Vibefollow refused the API key (%s %s): check VIBEFOLLOW_API_KEY. Sending is "
            "paused; up to %d events are held and retried every %.0f s",
            error.status,
            error.code or "",
            self._settings.max_queue_size,
            AUTH_PAUSE,
        )

    # -- backlog --------------------------------------------------------------

    def _park(self, request: Request) -> None:
        if self._stopped:
            # After close() nothing will retry it: count it now rather than hold it.
            if request.path != USERS_PATH:
                error = UndeliveredError("not delivered before shutdown")
                self._drop("shutdown", list(request.events), error)
            return
        with self._cond:
            self._backlog.append(request)
            self._backlog_weight += request.weight
            evicted = []
            while self._backlog_weight > self._settings.max_queue_size and len(self._backlog) > 1:
                oldest = self._backlog.popleft()
                self._backlog_weight -= oldest.weight
                evicted.append(oldest)
        for old in evicted:
            if old.path != USERS_PATH:
                self._drop("backlog_full", list(old.events), UndeliveredError("retry backlog full"))

    def _take_backlog(self) -> list[Request]:
        with self._cond:
            taken = list(self._backlog)
            self._backlog.clear()
            self._backlog_weight = 0
        return taken

    def _http(self) -> httpx.Client:
        if self._pid != os.getpid():
            self._reset_state()  # forked without the at-fork hook having run
        if self._client is None:
            self._client = self._new_client()
        return self._client

    def _new_client(self) -> httpx.Client:
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if self._settings.api_key:
            headers["Authorization"] = "Bearer " + self._settings.api_key
        return httpx.Client(
            base_url=self._settings.api_url,
            headers=headers,
            timeout=self._settings.timeout,
            transport=self._transport,
            follow_redirects=False,
        )


def _retryable(error: VibefollowError) -> bool:
    return error.status == 0 or error.status in RETRYABLE_STATUSES


def _error_for(response: httpx.Response) -> VibefollowError:
    detail = error_detail(response.content)
    status, code = response.status_code, detail.code
    message = (
        f"HTTP {status}"
        + (f" {code}" if code else "")
        + (f": {detail.message}" if detail.message else "")
    )
    if status in (401, 403):
        return AuthError(message, status=status, code=code)
    if status in (409, 422):
        return ValidationError(message, status=status, code=code, field=detail.field)
    if status == 429:
        after = parse_retry_after(response.headers.get("Retry-After"), time.time())
        return RateLimitError(message, code=code, retry_after=after)
    if status >= 500:
        after = parse_retry_after(response.headers.get("Retry-After"), time.time())
        return ServerError(message, status=status, code=code, retry_after=after)
    return VibefollowError(message, status=status, code=code)


def _describe(error: VibefollowError) -> str:
    field = getattr(error, "field", None)
    return f"{error}" + (f" (field {field})" if field else "")
