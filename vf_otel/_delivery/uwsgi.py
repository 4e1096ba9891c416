"""uWSGI: restart delivery in workers it forks in C, and say when its threads cannot run.

uWSGI loads the app in the master (unless ``lazy-apps``) and forks the workers
from C, so Python's ``os.register_at_fork`` hooks run only with
``py-call-osafterfork``: a worker would inherit a queue and no delivery thread.
uWSGI calls ``uwsgi.post_fork_hook`` in every worker it forks (after the at-fork
hooks when those run), so vf-otel chains its own there, keeping any hook the app
or ``uwsgidecorators`` set. Without ``enable-threads`` (or ``threads``) a worker
holds the GIL while it waits for a request: the delivery thread runs only while a
request is handled, and at the worker's exit (uWSGI runs ``atexit``). That delays
events rather than loses them, and is said once, loudly, at start-up.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any, Final

__all__ = ["NO_THREADS_WARNING", "watch_uwsgi"]

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
    from .pipeline import live_pipelines  # noqa: PLC0415 - pipeline imports this module

    for pipeline in live_pipelines():
        try:
            pipeline.adopt_fork()
        except Exception:  # noqa: BLE001 - a worker must start whatever happened here
            warnings.warn("vf-otel could not restart delivery after uWSGI's fork", stacklevel=1)
