"""SIGTERM delivers what is queued, then does exactly what it did before vf-otel was installed.

Containers, systemd, Kubernetes and uvicorn stop a process with SIGTERM, whose default
action ends Python without ``atexit``. Each scenario is a real process, sent a real
SIGTERM while its events are still queued (the flush interval is an hour), and must
deliver every event and end with the status SIGTERM gives it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

import vf_otel
from vf_otel._sources.sigterm import SigtermHook
from vf_otel.testing import VibefollowServer

from .conftest import NO_FLUSH_TIMER, server_env

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "SIGKILL"), reason="POSIX signals: SIGTERM's default action"
)
#: A hang guard for a child process, not a timing assertion.
HANG_GUARD = 120
EVENTS = 25
#: A prompt exit: the API answers at once, so delivery takes well under a second; the
#: bound leaves room for a loaded machine (the servers' own shutdown included).
SHUTDOWN_BOUND = 15.0


#: The end of every script: queue EVENTS events, say so, wait for the signal. Not
#: signal.pause(): a SIGTERM that lands between the print and the pause runs its handler
#: first, and a pause after it waits for ever; the wake-up pipe keeps a byte for it.
WAIT_FOR_SIGTERM = f"""
import os as _os, select as _select
_wake_r, _wake_w = _os.pipe()
_os.set_blocking(_wake_w, False)
signal.set_wakeup_fd(_wake_w)
for i in range({EVENTS}):
    log.warning("job_done", extra={{"vf_user": f"usr_{{i}}"}})
print("ready", flush=True)
_select.select([_wake_r], [], [])
"""


def child_env(server: VibefollowServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a child configured from VIBEFOLLOW_*; only an exit can deliver."""
    return server_env(server, **NO_FLUSH_TIMER, PYTHONPATH=str(tmp_path), **extra)


def terminate_when_ready(
    server: VibefollowServer, tmp_path: Path, setup: str, after: str = ""
) -> tuple[int, str, str]:
    """Run ``setup``, log EVENTS events, print ``ready``; SIGTERM it; then ``after`` runs if
    the process is still there; (status, out, err)."""
    script = tmp_path / "main.py"
    script.write_text(textwrap.dedent(setup) + WAIT_FOR_SIGTERM + textwrap.dedent(after))
    with subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, str(script)],
        env=child_env(server, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        first = child.stdout.readline()
        assert first == "ready\n", first + child.communicate(timeout=HANG_GUARD)[1]
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=HANG_GUARD)
    return child.returncode, out, err


def users(server: VibefollowServer) -> list[int]:
    """The numbers of the users of every accepted event, sorted (duplicates stay visible)."""
    return sorted(int(e["external_user_id"].removeprefix("usr_")) for e in server.events)


def test_plain_script_delivers_everything_and_dies_of_sigterm(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """configure(), events queued, SIGTERM: all delivered, and the status is -SIGTERM."""
    status, _, err = terminate_when_ready(
        server,
        tmp_path,
        """
        import logging
        import signal

        import vf_otel

        vf_otel.configure(spans=False)
        log = logging.getLogger("worker")
        """,
    )
    assert status == -signal.SIGTERM, err
    assert users(server) == list(range(EVENTS))


def test_an_app_handler_installed_before_is_still_called(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """The app's own SIGTERM handler runs after the delivery and decides the exit status."""
    status, out, err = terminate_when_ready(
        server,
        tmp_path,
        """
        import logging
        import signal
        import sys

        import vf_otel

        def graceful(signum, frame):
            print("app handler ran", flush=True)
            sys.exit(7)

        signal.signal(signal.SIGTERM, graceful)
        vf_otel.configure(spans=False)
        log = logging.getLogger("worker")
        """,
    )
    assert status == 7, err
    assert "app handler ran" in out
    assert users(server) == list(range(EVENTS))


def test_flush_on_sigterm_covers_a_handler_from_dictconfig(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """The one-liner for a handler installed without configure(): same delivery, same status."""
    status, _, err = terminate_when_ready(
        server,
        tmp_path,
        """
        import logging
        import logging.config
        import signal

        import vf_otel

        logging.config.dictConfig({
            "version": 1,
            "handlers": {"vf": {"class": "vf_otel.VibefollowHandler"}},
            "root": {"handlers": ["vf"]},
        })
        vf_otel.flush_on_sigterm()
        log = logging.getLogger("worker")
        """,
    )
    assert status == -signal.SIGTERM, err
    assert users(server) == list(range(EVENTS))


def test_a_server_that_restores_the_default_and_raises_again_loses_nothing(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """As uvicorn's workers do: its handler installed before the handler (so the hook chains
    to it), events logged during its shutdown, then SIG_DFL restored and SIGTERM raised:
    everything arrives, and the process still ends with SIGTERM's status."""
    status, out, err = terminate_when_ready(
        server,
        tmp_path,
        """
        import logging
        import signal

        import vf_otel

        stopping = []
        signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
        logging.getLogger().addHandler(vf_otel.VibefollowHandler())
        log = logging.getLogger("worker")
        """,
        after="""
        assert stopping == [signal.SIGTERM]
        log.warning("server_stopped", extra={"vf_user": "usr_1000"})
        print("shutdown logged", flush=True)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)
        print("ran to the end", flush=True)
        """,
    )
    assert status == -signal.SIGTERM, err
    assert "shutdown logged" in out
    assert "ran to the end" in out  # the raised SIGTERM was held until the exit
    assert users(server) == [*range(EVENTS), 1000]


def test_without_the_hook_sigterm_loses_the_queue(server: VibefollowServer, tmp_path: Path) -> None:
    """handle_sigterm=False leaves SIGTERM's default: the process dies with its queue."""
    status, _, err = terminate_when_ready(
        server,
        tmp_path,
        """
        import logging
        import signal

        import vf_otel

        vf_otel.configure(spans=False, handle_sigterm=False)
        log = logging.getLogger("worker")
        """,
    )
    assert status == -signal.SIGTERM, err
    assert users(server) == []


#: How the ASGI app installs vf-otel: configure(), or a plain handler (dictConfig, as
#: examples/integrations/fastapi_users.py does), with nothing else about SIGTERM.
ASGI_SETUPS = {
    "configure": "vf_otel.configure(spans=False)\n",
    "dictConfig": (
        'logging.config.dictConfig({"version": 1, "disable_existing_loggers": False, '
        '"handlers": {"vf": {"class": "vf_otel.VibefollowHandler"}}, '
        '"root": {"level": "INFO", "handlers": ["vf"]}})\n'
    ),
    "addHandler": "logging.getLogger().addHandler(vf_otel.VibefollowHandler())\n",
}
ASGI_APP = """\
import logging
import logging.config

import vf_otel

{setup}
log = logging.getLogger("shop")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        # Logged during uvicorn's graceful shutdown, after SIGTERM arrived.
        log.warning("server_stopped", extra={"vf_user": "usr_1000"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    log.warning("page_viewed", extra={"vf_user": scope["path"].strip("/")})
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""


def serve_asgi_then_sigterm(
    server: VibefollowServer,
    tmp_path: Path,
    setup: str,
    command: list[str],
    *,
    group: bool = True,
    **extra: str,
) -> tuple[subprocess.Popen[str], str, float]:
    """Serve the ASGI app with ``command`` (+ the listening fd), EVENTS requests, then SIGTERM
    to the whole process group (as systemd does), or with ``group=False`` to the server's
    main process alone (as ``docker stop`` does); (child, stderr, seconds to the exit)."""
    (tmp_path / "shop_app.py").write_text(ASGI_APP.replace("{setup}", setup))
    # Bound here and inherited: no port race, and requests wait in the backlog until ready.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.set_inheritable(True)
        port = listener.getsockname()[1]
        child = subprocess.Popen(  # noqa: S603 - our own interpreter and the server
            [sys.executable, "-m", *(part.format(fd=listener.fileno()) for part in command)],
            pass_fds=[listener.fileno()],
            cwd=tmp_path,
            env=child_env(server, tmp_path, **extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    with child, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=HANG_GUARD) as client:
        statuses = [client.get(f"/usr_{i}").status_code for i in range(EVENTS)]
        signalled = time.monotonic()
        if group:
            os.killpg(child.pid, signal.SIGTERM)
        else:
            child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=HANG_GUARD)
        took = time.monotonic() - signalled
    assert statuses == [200] * EVENTS, err
    return child, err, took


UVICORN: Final = ["uvicorn", "shop_app:app", "--lifespan", "on", "--fd", "{fd}"]
#: hypercorn's default: one worker process (spawned), the parent waits for it.
HYPERCORN: Final = ["hypercorn", "shop_app:app", "--bind", "fd://{fd}"]


@pytest.mark.slow
@pytest.mark.parametrize("setup", sorted(ASGI_SETUPS))
def test_uvicorn_delivers_every_request_event_at_sigterm(
    server: VibefollowServer, tmp_path: Path, setup: str
) -> None:
    """A real uvicorn, SIGTERM after serving: every event arrives, the lifespan's last one too,
    whether vf-otel came from configure() or a plain handler; uvicorn re-raises SIGTERM after
    its graceful shutdown, so the status is -SIGTERM."""
    pytest.importorskip("uvicorn", reason="uvicorn: the ASGI server under test")
    child, err, took = serve_asgi_then_sigterm(server, tmp_path, ASGI_SETUPS[setup], UVICORN)
    assert "Finished server process" in err  # uvicorn's own graceful shutdown ran
    assert child.returncode == -signal.SIGTERM, err
    assert users(server) == [*range(EVENTS), 1000]
    assert took < SHUTDOWN_BOUND, err


@pytest.mark.slow
def test_uvicorn_workers_deliver_what_their_graceful_shutdown_logs_too(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """`uvicorn --workers 2`: each worker installs its handler before importing the app, so
    the hook runs first, then uvicorn's graceful shutdown, then uvicorn raises SIGTERM again
    with the default action. Held until exit, it lets the lifespan's events arrive too."""
    pytest.importorskip("uvicorn", reason="uvicorn: the ASGI server under test")
    command = [*UVICORN, "--workers", "2"]
    # To the parent alone, as Kubernetes signals PID 1: it terminates each worker once.
    # Signalled as a group, a worker gets SIGTERM twice (the group's, then its parent's
    # terminate()); the second, process-directed, may land on a thread that does not
    # block it while the first is held, and end the worker before the exit delivers the
    # lifespan's events (1 run in 12 under load; vf-otel's own threads block it).
    _, err, took = serve_asgi_then_sigterm(
        server, tmp_path, ASGI_SETUPS["addHandler"], command, group=False
    )
    assert users(server) == [*range(EVENTS), 1000, 1000], err  # one lifespan per worker
    assert took < SHUTDOWN_BOUND, err


@pytest.mark.slow
@pytest.mark.parametrize("group", [True, False], ids=["group", "parent"])
@pytest.mark.parametrize("setup", ["dictConfig", "addHandler"])
def test_hypercorn_worker_delivers_every_request_event_at_sigterm(
    server: VibefollowServer, tmp_path: Path, setup: str, group: bool
) -> None:
    """A real hypercorn, SIGTERM to its process group (the worker's SIGTERM has the default
    action: the hook delivers) or to the parent alone (the worker exits normally): every
    queued event of a plain handler arrives, once, and the server ends promptly."""
    pytest.importorskip("hypercorn", reason="hypercorn: the ASGI server under test")
    _, err, took = serve_asgi_then_sigterm(
        server, tmp_path, ASGI_SETUPS[setup], HYPERCORN, group=group
    )
    assert set(range(EVENTS)) <= set(users(server)), err
    assert len(users(server)) == len(set(users(server)))  # each event once
    assert took < SHUTDOWN_BOUND, err


@pytest.mark.slow
def test_plain_handler_opt_out_by_environment_loses_the_queue(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """VIBEFOLLOW_HANDLE_SIGTERM=false: a plain handler leaves SIGTERM alone, as documented."""
    pytest.importorskip("uvicorn", reason="uvicorn: the ASGI server under test")
    child, err, _ = serve_asgi_then_sigterm(
        server, tmp_path, ASGI_SETUPS["addHandler"], UVICORN, VIBEFOLLOW_HANDLE_SIGTERM="false"
    )
    assert child.returncode == -signal.SIGTERM, err
    assert users(server) == []


# -- the hook itself, in this process --------------------------------------------------


def test_shutdown_puts_the_previous_sigterm_handling_back(server: VibefollowServer) -> None:
    """configure() installs the hook; shutdown() restores exactly what was there."""
    before = signal.getsignal(signal.SIGTERM)
    configured = vf_otel.configure(spans=False, api_key=server.api_key, base_url=server.base_url)
    try:
        assert signal.getsignal(signal.SIGTERM) is not before
    finally:
        configured.shutdown()
    assert signal.getsignal(signal.SIGTERM) is before


def test_opt_out_and_ignored_sigterm_are_left_alone(server: VibefollowServer) -> None:
    """handle_sigterm=False, or SIGTERM ignored (SIG_IGN): SIGTERM's handling is not touched."""
    options: dict[str, Any] = {
        "spans": False,
        "api_key": server.api_key,
        "base_url": server.base_url,
    }
    before = signal.getsignal(signal.SIGTERM)
    opted_out = vf_otel.configure(handle_sigterm=False, **options)
    assert signal.getsignal(signal.SIGTERM) is before
    opted_out.shutdown()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        configured = vf_otel.configure(**options)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        assert vf_otel.flush_on_sigterm() is False
        configured.shutdown()
    finally:
        signal.signal(signal.SIGTERM, before)


def test_configure_off_the_main_thread_installs_no_hook(server: VibefollowServer) -> None:
    """Only the main thread may install a signal handler: elsewhere configure() just works."""
    before = signal.getsignal(signal.SIGTERM)
    made: list[vf_otel.Configuration] = []
    thread = threading.Thread(
        target=lambda: made.append(
            vf_otel.configure(spans=False, api_key=server.api_key, base_url=server.base_url)
        )
    )
    thread.start()
    thread.join(HANG_GUARD)
    assert len(made) == 1
    made[0].shutdown()
    assert signal.getsignal(signal.SIGTERM) is before


DJANGO_SETTINGS = """\
import vf_otel

SECRET_KEY = "test-only"
ALLOWED_HOSTS = ["127.0.0.1"]
INSTALLED_APPS = []
MIDDLEWARE = []
ROOT_URLCONF = "shop_urls"
vf_otel.configure(spans=False)
"""
DJANGO_URLS = """\
import logging

from django.http import HttpResponse
from django.urls import path

log = logging.getLogger("shop")


def view(request, user):
    log.warning("page_viewed", extra={"vf_user": user})
    return HttpResponse("ok")


urlpatterns = [path("<str:user>", view)]
"""


def free_loopback_port() -> int:
    """A port free on 127.0.0.1 now (runserver takes no socket of ours)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get_when_listening(client: httpx.Client, path: str) -> int:
    """GET ``path`` once the server listens (it binds after it starts); the status."""
    for _ in range(HANG_GUARD * 20):
        try:
            return client.get(path).status_code
        except httpx.ConnectError:
            time.sleep(0.05)
    raise AssertionError("the server never listened")


def serve_then_sigterm(
    server: VibefollowServer, tmp_path: Path, *options: str
) -> subprocess.Popen[str]:
    """Django's runserver with ``options``: EVENTS requests, then SIGTERM; the ended process."""
    pytest.importorskip("django")
    (tmp_path / "shop_settings.py").write_text(DJANGO_SETTINGS)
    (tmp_path / "shop_urls.py").write_text(DJANGO_URLS)
    port = free_loopback_port()
    env = child_env(server, tmp_path, DJANGO_SETTINGS_MODULE="shop_settings")
    command = [sys.executable, "-m", "django", "runserver", *options, f"127.0.0.1:{port}"]
    child = subprocess.Popen(  # noqa: S603 - our own interpreter and Django
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with child, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=HANG_GUARD) as client:
        statuses = [get_when_listening(client, "/usr_0")]
        statuses += [client.get(f"/usr_{i}").status_code for i in range(1, EVENTS)]
        child.send_signal(signal.SIGTERM)
        child.communicate(timeout=HANG_GUARD)
    assert statuses == [200] * EVENTS
    return child


def test_runserver_noreload_delivers_every_request_event_at_sigterm(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """Django's runserver --noreload (as run in a container), SIGTERM: every event arrives."""
    child = serve_then_sigterm(server, tmp_path, "--noreload")
    assert child.returncode == -signal.SIGTERM
    assert users(server) == list(range(EVENTS))


def test_runserver_autoreloader_kills_its_server_and_the_queue_with_it(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """runserver's reloader answers SIGTERM by SIGKILLing the server: what is still queued
    (here with a one-hour flush_interval, so nothing went early) is lost with it. By
    default the serving process sends within 0.2 s instead (tests/test_devservers.py)."""
    child = serve_then_sigterm(server, tmp_path)
    assert child.returncode == 0  # the reloader's own sys.exit(0)
    assert users(server) == []


def test_a_plain_handler_installs_the_hook_and_close_takes_it_out(
    server: VibefollowServer,
) -> None:
    """One hook for any number of handlers, chained to the app's handler, gone after the last
    close(): no hooks pile up in a process (a test run) that builds many handlers."""
    options: dict[str, Any] = {"api_key": server.api_key, "base_url": server.base_url}

    def app_handler(signum: int, frame: object) -> None:
        """The app's own SIGTERM handler."""

    before = signal.signal(signal.SIGTERM, app_handler)
    try:
        first = vf_otel.VibefollowHandler(**options)
        hook = signal.getsignal(signal.SIGTERM)
        assert isinstance(hook, SigtermHook)
        assert hook.previous is app_handler  # chained to, never replaced
        second = vf_otel.VibefollowHandler(**options)
        assert signal.getsignal(signal.SIGTERM) is hook
        first.close()
        assert signal.getsignal(signal.SIGTERM) is hook  # `second` still wants it
        second.close()
        assert signal.getsignal(signal.SIGTERM) is app_handler
        vf_otel.VibefollowHandler(handle_sigterm=False, **options).close()
        assert signal.getsignal(signal.SIGTERM) is app_handler
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_handler_built_off_the_main_thread_or_with_sigterm_ignored_touches_nothing(
    server: VibefollowServer,
) -> None:
    """Off the main thread no signal handler can be installed, and an ignored SIGTERM
    loses nothing: the handler works and SIGTERM stays as it was."""
    options: dict[str, Any] = {"api_key": server.api_key, "base_url": server.base_url}
    before = signal.getsignal(signal.SIGTERM)
    made: list[vf_otel.VibefollowHandler] = []
    thread = threading.Thread(target=lambda: made.append(vf_otel.VibefollowHandler(**options)))
    thread.start()
    thread.join(HANG_GUARD)
    assert len(made) == 1
    assert signal.getsignal(signal.SIGTERM) is before
    made[0].close()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        vf_otel.VibefollowHandler(**options).close()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)


#: A spawn Pool used the plain way: the handler built in the initializer, no flush in the
#: task, and the `with` block's exit calling terminate() (SIGTERM to every worker).
SPAWN_POOL = f"""\
import logging
import multiprocessing

import vf_otel

log = logging.getLogger("jobs")


def configure():
    logging.getLogger().addHandler(vf_otel.VibefollowHandler())
    logging.getLogger().setLevel(logging.INFO)


def export(job):
    log.info("job_done", extra={{"vf_user": f"usr_{{job}}"}})
    return True


if __name__ == "__main__":
    with multiprocessing.get_context("spawn").Pool(4, initializer=configure) as pool:
        assert all(pool.map(export, range({EVENTS})))
"""


@pytest.mark.slow
def test_a_spawn_pool_block_delivers_without_a_flush_in_the_task(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """`with Pool()` ends in terminate(): each spawned worker's hook (or its exit) drains it."""
    script = tmp_path / "jobs.py"
    script.write_text(SPAWN_POOL)
    started = time.monotonic()
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, str(script)],
        env=child_env(server, tmp_path),
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert users(server) == list(range(EVENTS))
    assert time.monotonic() - started < SHUTDOWN_BOUND + 30  # spawning 4 interpreters included


#: A main thread blocked in a C-level wait when SIGTERM's C handler runs elsewhere: the
#: handler only sets the flag the hook waits on, and nothing ends the wait (a pool
#: worker that ``Pool.terminate()`` signals as it blocks on the task queue's lock).
#: ``trip`` sends SIGTERM to its own thread once the main thread sleeps in the wait.
STUCK_IN_A_WAIT = f"""
import logging, multiprocessing, os, signal, sys, threading, time
import vf_otel

def wait_for_ever():
    multiprocessing.Semaphore(0).acquire()  # no one releases it: only a signal ends it

def blocked(main):
    frame = sys._current_frames().get(main.ident)
    if frame is None or frame.f_code.co_name != "wait_for_ever":
        return False
    # The main thread's id is the process's (native_id is the parent's in a forked child).
    with open(f"/proc/self/task/{{os.getpid()}}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "S"

def trip(main):
    seen = 0  # asleep five times in a row while this thread lets the GIL go: in the wait
    while seen < 5:
        time.sleep(0.02)
        seen = seen + 1 if blocked(main) else 0
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

def work():
    log = logging.getLogger("worker")
    for i in range({EVENTS}):
        log.warning("job_done", extra={{"vf_user": f"usr_{{i}}"}})
    threading.Thread(target=trip, args=(threading.main_thread(),), daemon=True).start()
    wait_for_ever()

vf_otel.configure(spans=False)
if sys.argv[1] == "forked":  # the hook was installed before the fork: the child's own
    pid = os.fork()
    if pid == 0:
        work()
    _, status = os.waitpid(pid, 0)
    sys.exit(100 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else 1)
work()
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="Linux's /proc/<pid>/task")
@pytest.mark.parametrize("where", ["main", "forked"])
def test_a_sigterm_caught_as_the_main_thread_blocks_still_runs_the_hook(
    server: VibefollowServer, tmp_path: Path, where: str
) -> None:
    """SIGTERM's flag set while the main thread sleeps in a C-level wait: the process
    (or a child forked after the hook was installed) still delivers and dies of SIGTERM."""
    script = tmp_path / "stuck.py"
    script.write_text(STUCK_IN_A_WAIT)
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, str(script), where],
        env=child_env(server, tmp_path),
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
    )
    expected = -signal.SIGTERM if where == "main" else 100 + signal.SIGTERM
    assert done.returncode == expected, done.stderr
    assert users(server) == list(range(EVENTS))


def test_the_wake_up_fd_is_taken_only_when_free_and_given_back(
    server: VibefollowServer,
) -> None:
    """A handler watches SIGTERM through a wake-up fd of its own only if none was set, and
    closing it puts back what was there: asyncio's, or none."""
    read, write = os.pipe()
    os.set_blocking(write, False)
    before = signal.set_wakeup_fd(write)  # the test runner's, if any: back at the end
    try:
        theirs = vf_otel.VibefollowHandler(api_key=server.api_key, base_url=server.base_url)
        assert signal.set_wakeup_fd(write) == write  # still theirs, untouched
        theirs.close()
        assert signal.set_wakeup_fd(-1) == write
        handler = vf_otel.VibefollowHandler(api_key=server.api_key, base_url=server.base_url)
        ours = signal.set_wakeup_fd(-1)
        signal.set_wakeup_fd(ours)
        assert ours not in (-1, write)  # the watch's own pipe
        handler.close()
        assert signal.set_wakeup_fd(-1) == -1
        assert not [t for t in threading.enumerate() if t.name == "vf-otel-sigterm"]
    finally:
        signal.set_wakeup_fd(before)
        os.close(read)
        os.close(write)
