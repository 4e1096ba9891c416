"""gunicorn settings for gunicorn_app.py: forked workers that deliver before they exit.

    cd examples && gunicorn -c gunicorn.conf.py gunicorn_app:app

``PORT`` picks the port on 127.0.0.1 (default 8000; ``0`` lets the system choose one,
which gunicorn's "Listening at:" line then names).
"""

from __future__ import annotations

import logging
import os

import vf_otel

# Loopback, behind a reverse proxy on the same host (a container would bind 0.0.0.0).
bind = [f"127.0.0.1:{os.environ.get('PORT', '8000')}"]
workers = 4
# The app (and so the handler) is created once, in the master, before the workers are
# forked. vf-otel re-initialises itself in each child: no post_fork hook is needed.
preload_app = True

#: How long worker_exit waits for this worker's last events (seconds).
WORKER_EXIT_FLUSH_TIMEOUT = 10.0
# On SIGTERM (and max_requests restarts) the master gives each worker this long to
# finish its request, run worker_exit and exit, then SIGKILLs it, losing whatever is
# still queued. Keep it above WORKER_EXIT_FLUSH_TIMEOUT plus the handler's
# shutdown_timeout (VIBEFOLLOW_SHUTDOWN_TIMEOUT, default 10 s, spent at interpreter
# exit by logging.shutdown() if the flush did not finish): 10 + 10 < 30.
graceful_timeout = 30

# gunicorn's own error log, which it sends to stderr (or --error-logfile).
log = logging.getLogger("gunicorn.error")


def worker_exit(server: object, worker: object) -> None:
    """Deliver what this worker still holds, in the worker, after its last request."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, vf_otel.VibefollowHandler) and not handler.flush(
            timeout=WORKER_EXIT_FLUSH_TIMEOUT
        ):
            # Not lost yet: logging.shutdown() tries again at exit (and spools with spool_path).
            log.warning("vf-otel: events still undelivered at worker exit: %s", handler.stats())
