"""Celery: events from tasks, the user carried in task headers, delivery before a worker exits.

    pip install vf-otel celery
    python examples/integrations/celery_tasks.py     # runs the tasks eagerly, in process

Four signal handlers do the work:

- ``before_task_publish`` copies ``vf_otel.current_user()`` of the code that sends a
  task into the message header ``vf_user``;
- ``task_prerun`` / ``task_postrun`` run the task inside ``vf_otel.user(<that header>)``,
  so a task logs ``extra={"vf_event": ...}`` without naming the user;
- ``worker_process_shutdown`` flushes the handler: prefork pool processes end with
  ``os._exit()``, which skips ``logging.shutdown()`` and would lose queued events.

Run a worker with ``celery -A celery_tasks worker --loglevel INFO`` (from this directory, with
your broker in ``broker_url``); ``after_setup_logger`` adds the handler to the root logger Celery
sets up. Without ``--loglevel INFO`` that logger stays at WARNING and filters the tasks' events.
tests/test_celery_worker.py runs this app in a real prefork worker and stops it with SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from celery import Celery, Task
from celery.signals import (
    after_setup_logger,
    before_task_publish,
    task_postrun,
    task_prerun,
    worker_process_shutdown,
)
from demo_server import report, vibefollow_env

import vf_otel

#: The message header that carries the user from the sender to the task.
USER_HEADER = "vf_user"
FLUSH_TIMEOUT = 10.0

log = logging.getLogger("shop.tasks")
# Eager tasks (main below) never touch the broker; a worker would name a real one.
app = Celery("shop", broker="memory://localhost/")
#: The user scope of each running task, by task id: entered in prerun, left in postrun.
_scopes: dict[str, contextlib.ExitStack] = {}


@app.task
def export_report(report_id: str) -> str:
    """Tagged with vf_event only: the user comes from the task's headers."""
    log.info("export", extra={"vf_event": "feature_used", "vf_properties": {"feature": "pdf"}})
    return f"{report_id}.pdf"


def user_headers() -> dict[str, str]:
    """The message headers that carry the sender's current user, if any."""
    current = vf_otel.current_user()
    return {} if current is None else {USER_HEADER: current}


@before_task_publish.connect
def add_user_header(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Sender side: forward the current user with the message (real brokers only)."""
    if headers is not None:
        for key, value in user_headers().items():
            headers.setdefault(key, value)


def task_user(task: Task[Any, Any]) -> str | None:
    """The user a task was sent for: a custom header (eager) or request attribute (worker)."""
    headers = getattr(task.request, "headers", None) or {}
    value = headers.get(USER_HEADER) or getattr(task.request, USER_HEADER, None)
    return value if isinstance(value, str) else None


@task_prerun.connect
def enter_user(task_id: str = "", task: Task[Any, Any] | None = None, **_: Any) -> None:
    """Run the task inside ``vf_otel.user(...)`` until its postrun signal."""
    if task is None:
        return
    scope = contextlib.ExitStack()
    scope.enter_context(vf_otel.user(task_user(task)))
    _scopes[task_id] = scope


@task_postrun.connect
def leave_user(task_id: str = "", **_: Any) -> None:
    """Leave the task's user scope (prerun and postrun run in the same thread and context)."""
    scope = _scopes.pop(task_id, None)
    if scope is not None:
        scope.close()


@after_setup_logger.connect
def add_vibefollow_handler(logger: logging.Logger | None = None, **_: Any) -> None:
    """Worker side: add the handler (configured from VIBEFOLLOW_*) to Celery's root logger."""
    if logger is not None:
        logger.addHandler(vf_otel.VibefollowHandler(logging.INFO))


@worker_process_shutdown.connect
def flush_vibefollow(**_: Any) -> None:
    """Deliver what is queued before a pool process exits without running atexit hooks."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, vf_otel.VibefollowHandler):
            handler.flush(timeout=FLUSH_TIMEOUT)


def main() -> None:
    """Run tasks eagerly in this process: no broker, no worker, same signals."""
    with vibefollow_env() as server:
        logging.basicConfig(level=logging.INFO)
        logging.getLogger().addHandler(vf_otel.VibefollowHandler())
        app.conf.task_always_eager = True
        # Eager tasks are not published, so pass the header by hand (a worker gets it
        # from before_task_publish).
        export_report.apply_async(("r1",), headers={USER_HEADER: "usr_42"})
        with vf_otel.user("usr_7"):
            export_report.apply_async(("r2",), headers=user_headers())
        export_report.delay("r3")  # no user: dropped as missing_user
        report(server)


if __name__ == "__main__":
    main()
