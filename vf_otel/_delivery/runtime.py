"""The runtimes around the pipelines: uWSGI's C-forked workers, serverless freezes."""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any, Final, TypeVar

__all__ = [
    "NO_THREADS_WARNING",
    "flush_after",
    "flush_all",
    "watch_lambda",
    "watch_uwsgi",
]


# uWSGI: restart delivery in workers it forks in C, and say when its threads cannot run.
#
# uWSGI loads the app in the master (unless ``lazy-apps``) and forks the workers
# from C, so Python's ``os.register_at_fork`` hooks run only with
# ``py-call-osafterfork``: a worker would inherit a queue and no delivery thread.
# uWSGI calls ``uwsgi.post_fork_hook`` in every worker it forks (after the at-fork
# hooks when those run), so vf-otel chains its own there, keeping any hook the app
# or ``uwsgidecorators`` set. Without ``enable-threads`` (or ``threads``) a worker
# holds the GIL while it waits for a request: the delivery thread runs only while a
# request is handled, and at the worker's exit (uWSGI runs ``atexit``). That delays
# events rather than loses them, and is said once, loudly, at start-up.

#: Marks the hook vf-otel chained, so it is chained (and the warning given) once.
_MARK: Final = "_vf_otel_post_fork"
NO_THREADS_WARNING: Final = (
    "vf-otel: uWSGI runs without threads (neither enable-threads nor threads is set): "
    "vf-otel's delivery thread only runs while a request is handled, so events wait for "
    "the next request or the worker's exit. Set enable-threads = true (--enable-threads)."
)


def watch_uwsgi() -> None:
    """Under uWSGI, chain the post-fork hook and warn when threads are off; once a process."""
    module = sys.modules.get("uwsgi")  # present only inside uWSGI; importing it costs
    if module is None or getattr(getattr(module, "post_fork_hook", None), _MARK, False):
        return
    previous: Callable[[], Any] | None = getattr(module, "post_fork_hook", None)

    def post_fork() -> None:
        _restart_pipelines()
        if previous is not None:
            previous()

    setattr(post_fork, _MARK, True)
    chain = getattr(sys.modules.get("uwsgidecorators"), "postfork_chain", None)
    if isinstance(chain, list) and previous is not None:
        chain.insert(0, _restart_pipelines)  # it owns the hook (and replaces it on import)
        setattr(previous, _MARK, True)
    else:
        setattr(module, "post_fork_hook", post_fork)  # noqa: B010 - uwsgi is built at run time
    if not threads_enabled(getattr(module, "opt", {})):
        warnings.warn(NO_THREADS_WARNING, RuntimeWarning, stacklevel=2)


def threads_enabled(opt: dict[str, Any]) -> bool:
    """Whether uWSGI's options (``uwsgi.opt``) let the app's threads run between requests."""
    if opt.get("enable-threads"):
        return True
    threads = opt.get("threads")
    if isinstance(threads, list):  # an option given twice
        threads = threads[-1]
    if isinstance(threads, bytes):
        threads = threads.decode(errors="replace")
    try:
        return int(str(threads)) > 0  # any threads option turns Python threads on
    except ValueError:
        return threads is True


def _restart_pipelines() -> None:
    from .pipeline import live_pipelines  # noqa: PLC0415 - pipeline.py imports this module

    for pipeline in live_pipelines():
        try:
            pipeline.adopt_fork()
        except Exception:  # noqa: BLE001 - a worker must start whatever happened here
            warnings.warn("vf-otel could not restart delivery after uWSGI's fork", stacklevel=1)


# Serverless: an invocation's events are delivered before its result is posted.
#
# Between invocations AWS Lambda freezes the sandbox (the delivery thread stops
# mid-interval) and may discard it without any exit hook, so events still queued
# when the result goes out can be lost. Under Lambda (``AWS_LAMBDA_RUNTIME_API``
# set, the runtime interface client ``awslambdaric`` loaded, as in AWS's Python
# runtimes) vf-otel wraps the client's ``post_invocation_result`` and
# ``post_invocation_error``, as the best peers do: every pipeline is flushed (within
# its ``shutdown_timeout``, one deadline for all) before the result is posted. Nothing
# is left for the freeze. ``@vf_otel.flush_after`` does the same around any function,
# for other runtimes or a custom bootstrap.

F = TypeVar("F", bound=Callable[..., Any])
_logger = logging.getLogger("vf_otel")
#: The runtime client module of awslambdaric, and the methods that post a result.
_CLIENT_MODULE: Final = "awslambdaric.lambda_runtime_client"
_POSTS: Final = ("post_invocation_result", "post_invocation_error")
#: The OpenTelemetry API modules whose global provider may buffer (the SDK's batch processors).
_PROVIDERS: Final = (
    ("opentelemetry.trace", "get_tracer_provider"),
    ("opentelemetry._logs", "get_logger_provider"),
)
#: Marks a wrapped method, so the client is wrapped once.
_FLUSH_MARK: Final = "_vf_otel_flushes"


def flush_all(timeout: float | None = None) -> bool:
    """Flush every delivering pipeline, all within one deadline; True if all of it landed.

    ``timeout`` defaults to the longest ``shutdown_timeout`` among them. Never raises.
    """
    from .pipeline import live_pipelines  # noqa: PLC0415 - pipeline.py imports this module

    pipelines = live_pipelines()
    if not pipelines:
        return True
    if timeout is None:
        timeout = max(pipeline.settings.shutdown_timeout for pipeline in pipelines)
    deadline = time.monotonic() + timeout
    landed = _flush_sdk_processors(timeout)  # their spans and log records reach the exporters
    for pipeline in pipelines:
        try:
            landed = pipeline.flush(max(0.0, deadline - time.monotonic())) and landed
        except Exception:
            _logger.debug("vf-otel could not flush before the result", exc_info=True)
            landed = False
    return landed


def _flush_sdk_processors(timeout: float) -> bool:
    """Force-flush the global tracer and logger providers, if the app loaded OpenTelemetry."""
    landed = True
    for module_name, getter in _PROVIDERS:
        module = sys.modules.get(module_name)
        if module is None:
            continue  # never imported here: nothing of it buffers (and no import cost)
        try:
            force_flush = getattr(getattr(module, getter)(), "force_flush", None)
            if callable(force_flush):
                landed = force_flush(int(timeout * 1000)) is not False and landed
        except Exception:
            _logger.debug("vf-otel could not flush %s", module_name, exc_info=True)
            landed = False
    return landed


def flush_after(function: F) -> F:
    """Deliver what ``function`` logged before it returns or raises: for serverless handlers.

    Under AWS Lambda's runtime client vf-otel does this itself; the decorator is the
    one-line way elsewhere (Cloud Functions, a custom runtime). Waits at most the
    longest ``shutdown_timeout`` of the handlers and exporters in the process.
    """

    @functools.wraps(function)
    def flushing(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        finally:
            flush_all()

    return flushing  # type: ignore[return-value]


def watch_lambda() -> None:
    """Under AWS Lambda's runtime client, flush before each result is posted (once a process)."""
    if "AWS_LAMBDA_RUNTIME_API" not in os.environ:
        return  # not Lambda: importing the client module costs a cold start for nothing
    module = sys.modules.get(_CLIENT_MODULE)
    client = getattr(module, "BaseLambdaRuntimeClient", None) or getattr(
        module, "LambdaRuntimeClient", None
    )
    if client is None:
        _logger.debug("vf-otel found no Lambda runtime client to flush before results")
        return
    for name in _POSTS:
        post = getattr(client, name, None)
        if callable(post) and not getattr(post, _FLUSH_MARK, False):
            setattr(client, name, _flushing_first(post))


def _flushing_first(post: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(post)
    def posting(*args: Any, **kwargs: Any) -> Any:
        flush_all()
        return post(*args, **kwargs)

    setattr(posting, _FLUSH_MARK, True)
    return posting
