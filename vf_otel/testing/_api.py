"""The Vibefollow API behaviour behind the test server, free of any socket code.

``InMemoryApi`` turns one ``Incoming`` request into one ``Reply``, applying the
contract checks in the documented order and recording what it saw. All state lives behind one
re-entrant condition so user callbacks (``reject_event`` predicates) may read the server.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final

from vf_otel.testing import _validation as checks
from vf_otel.testing._faults import ROUTES, Fault, FaultQueue, default_code
from vf_otel.testing._records import FaultKind, RecordedRequest, redact_headers
from vf_otel.testing._validation import ApiError

logger = logging.getLogger(__name__)

EventPredicate = Callable[[dict[str, Any]], bool]

_ACCEPTED: Final = json.dumps({"data": {"accepted": True}}).encode()
_REPLAY_HEADER: Final = ("Idempotent-Replayed", "true")
_ALLOW_HEADER: Final = ("Allow", "POST")


@dataclass(frozen=True, slots=True)
class Incoming:
    """A request as read off the wire; ``body_error`` is set when its body could not be read."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    body_error: ApiError | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """What to send back; ``reset`` means abort the connection and send nothing.

    ``content_type`` None sends no Content-Type header at all.
    """

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    reset: bool = False
    close: bool = False
    content_type: str | None = "application/json"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A ``VibefollowServer.reject_event`` rule; ``name_field`` False names no field."""

    predicate: EventPredicate
    name_field: bool = True


@dataclass(frozen=True, slots=True)
class _Stored:
    """An idempotency entry: which request it was for and exactly what was answered."""

    fingerprint: bytes
    status: int
    body: bytes


def error_body(error: ApiError) -> bytes:
    """The JSON error envelope for ``error``."""
    return json.dumps(error.envelope()).encode()


def _error_reply(error: ApiError, *headers: tuple[str, str], close: bool = False) -> Reply:
    return Reply(error.status, error_body(error), headers, close=close)


def _scripted_reply(fault: Fault) -> Reply:
    return Reply(fault.status, fault.body, fault.headers, content_type=fault.content_type)


class InMemoryApi:
    """Validates, deduplicates and records requests the way the real API does."""

    def __init__(
        self,
        api_key: str,
        *,
        max_batch_size: int,
        reuse_status: int,
        wait: Callable[[float], bool],
        max_body_bytes: int = checks.DEFAULT_MAX_BODY_BYTES,
        max_event_bytes: int = checks.DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self._api_key = api_key
        self._max_batch_size = max_batch_size
        self._reuse_status = reuse_status
        self._max_body_bytes = max_body_bytes
        self._max_event_bytes = max_event_bytes
        # Interruptible sleep returning True when cut short, so stop() ends scripted delays.
        self._wait = wait
        self.changed = threading.Condition(threading.RLock())
        self.faults = FaultQueue()
        self.rejections: list[Rejection] = []
        self.events: list[dict[str, Any]] = []
        self.users: list[dict[str, Any]] = []
        self.requests: list[RecordedRequest] = []
        self.replayed = 0
        self.rejected = 0
        self._idempotency: dict[str, _Stored] = {}

    def clear(self) -> None:
        """Forget everything received and everything scripted."""
        with self.changed:
            self.faults.clear()
            self.rejections.clear()
            self.events.clear()
            self.users.clear()
            self.requests.clear()
            self._idempotency.clear()
            self.replayed = 0
            self.rejected = 0

    def handle(self, incoming: Incoming) -> Reply:
        """Answer one request; never raises (an internal error becomes a 500)."""
        try:
            return self._handle(incoming)
        except Exception:
            logger.exception(
                "vibefollow test server failed on %s %s", incoming.method, incoming.path
            )
            error = ApiError(500, "server_error", "internal error in the test server")
            self._record(incoming, error.status, replayed=False, fault=None)
            return _error_reply(error)

    def _handle(self, incoming: Incoming) -> Reply:
        early = self._route_error(incoming) or incoming.body_error
        if early is not None:
            self._record(incoming, early.status, replayed=False, fault=None)
            allow = (_ALLOW_HEADER,) if early.status == 405 else ()
            return _error_reply(early, *allow, close=incoming.body_error is not None)
        with self.changed:
            fault = self.faults.take(incoming.path)
        if fault is not None and fault.kind in ("status", "reset"):
            return self._fail(incoming, fault)
        if fault is not None and fault.kind in ("respond", "redirect") and not fault.process:
            self._record(incoming, fault.status, replayed=False, fault=fault.kind)
            return _scripted_reply(fault)
        if fault is not None and fault.kind == "delay" and self._wait(fault.seconds):
            # stop() cut the delay short: a stopping server answers nothing more.
            self._record(incoming, None, replayed=False, fault="delay")
            return Reply(0, reset=True)
        # A processed "respond" fault: the API did its work, a proxy replaced the answer.
        scripted = None if fault is None or fault.kind != "respond" else _scripted_reply(fault)
        reply = self._process(incoming, None if fault is None else fault.kind, scripted)
        if fault is not None and fault.kind == "lose_response":
            return Reply(reply.status, reset=True)
        return reply

    def _route_error(self, incoming: Incoming) -> ApiError | None:
        if incoming.path not in ROUTES:
            return ApiError(404, "not_found", f"no route for {incoming.path}")
        if incoming.method != "POST":
            return ApiError(405, "method_not_allowed", "only POST is supported")
        return None

    def _fail(self, incoming: Incoming, fault: Fault) -> Reply:
        if fault.kind == "reset":
            self._record(incoming, None, replayed=False, fault="reset")
            return Reply(0, reset=True)
        self._record(incoming, fault.status, replayed=False, fault="status")
        error = ApiError(fault.status, fault.code or default_code(fault.status), "scripted failure")
        retry_after = () if fault.retry_after is None else (("Retry-After", fault.retry_after),)
        return _error_reply(error, *retry_after)

    def _process(
        self, incoming: Incoming, fault: FaultKind | None, scripted: Reply | None = None
    ) -> Reply:
        with self.changed:
            reply, replayed = self._answer(incoming)
            reply = scripted or reply
            self._record(incoming, reply.status, replayed=replayed, fault=fault)
            return reply

    def _answer(self, incoming: Incoming) -> tuple[Reply, bool]:
        if len(incoming.body) > self._max_body_bytes:
            # What a proxy or gateway in front of the API does, before anything else.
            size = f"request body is {len(incoming.body)} bytes, over {self._max_body_bytes}"
            return _error_reply(ApiError(413, "payload_too_large", size)), False
        headers = incoming.headers
        error = (
            checks.check_auth(headers.get("authorization"), self._api_key)
            or checks.check_content_type(headers.get("content-type"))
            or checks.check_idempotency_key(headers.get("idempotency-key"))
        )
        payload, json_error = checks.parse_json(incoming.body)
        error = error or json_error
        if error is not None:
            return _error_reply(error), False
        key = checks.normalise_idempotency_key(headers["idempotency-key"])
        # The route is part of the fingerprint: one key must not serve two different endpoints.
        fingerprint = hashlib.sha256(incoming.path.encode() + b"\0" + incoming.body).digest()
        stored = self._idempotency.get(key)
        if stored is not None:
            return self._repeat(stored, fingerprint)
        error = self._validate(incoming.path, payload)
        reply = _error_reply(error) if error is not None else Reply(202, _ACCEPTED)
        # A real server replays whatever it answered, the 422 included.
        self._idempotency[key] = _Stored(fingerprint, reply.status, reply.body)
        if error is None:
            self._accept(incoming.path, payload)
        return reply, False

    def _repeat(self, stored: _Stored, fingerprint: bytes) -> tuple[Reply, bool]:
        if stored.fingerprint != fingerprint:
            message = "Idempotency-Key was already used with a different request"
            error = ApiError(self._reuse_status, "idempotency_key_reuse", message)
            return _error_reply(error), False
        self.replayed += 1
        return Reply(stored.status, stored.body, (_REPLAY_HEADER,)), True

    def _validate(self, path: str, payload: Any) -> ApiError | None:
        if path == "/api/v1/users":
            return checks.check_user(payload)
        if path == "/api/v1/events":
            return self._check_event(payload, "")
        error = checks.check_batch_envelope(payload, self._max_batch_size)
        if error is not None:
            return error
        # Like the API: the whole batch is refused, with one error per invalid event.
        errors = [
            error
            for index, event in enumerate(payload["events"])
            if (error := self._check_event(event, f"events[{index}].")) is not None
        ]
        if not errors:
            return None
        return replace(errors[0], others=tuple(errors[1:]))

    def _check_event(self, event: Any, prefix: str) -> ApiError | None:
        return (
            checks.check_event(event, prefix)
            or checks.check_event_size(event, prefix, self._max_event_bytes)
            or self._check_rules(event, prefix)
        )

    def _check_rules(self, event: dict[str, Any], prefix: str) -> ApiError | None:
        # Each predicate sees its own copy so a careless one cannot alter what gets recorded.
        for rule in self.rejections:
            if rule.predicate(copy.deepcopy(event)):
                field = prefix + "name" if rule.name_field else None
                return ApiError(
                    422, checks.VALIDATION_FAILED, "event rejected by server rule", field
                )
        return None

    def _accept(self, path: str, payload: Any) -> None:
        if path == "/api/v1/users":
            self.users.append(copy.deepcopy(payload))
        elif path == "/api/v1/events":
            self.events.append(copy.deepcopy(payload))
        else:
            self.events.extend(copy.deepcopy(payload["events"]))

    def _record(
        self, incoming: Incoming, status: int | None, *, replayed: bool, fault: FaultKind | None
    ) -> None:
        payload, _ = checks.parse_json(incoming.body)
        request = RecordedRequest(
            method=incoming.method,
            path=incoming.path,
            headers=redact_headers(incoming.headers),
            body=incoming.body,
            status=status,
            json=payload,
            idempotency_key=incoming.headers.get("idempotency-key"),
            replayed=replayed,
            fault=fault,
        )
        with self.changed:
            self.requests.append(request)
            # Scripted answers are the test's doing, not the server refusing the request.
            scripted = fault in ("status", "respond", "redirect")
            if status is not None and 400 <= status < 500 and not replayed and not scripted:
                self.rejected += 1
            self.changed.notify_all()
