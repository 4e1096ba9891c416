"""What every benchmark script shares: sizes, the loopback guard, servers, timing, output.

Each comparison runs in its own process (``run.py`` starts one per script), and
each script writes its results as JSON with ``--json PATH``. Servers run in a
child process of their own (``_server_proc.py``), so their request handling
does not compete for the measured process's GIL.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import ipaddress
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

HERE: Final = Path(__file__).resolve().parent
#: The only API key the benchmark's VibefollowServer accepts (local-only, opens nothing).
LOCAL_KEY: Final = "sk_test_" + "0" * 32
SERVER_START_TIMEOUT: Final = 30.0


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much work one run does: ``full`` for the docs, ``quick`` for CI, ``smoke`` for tests."""

    calls: int  # hot path: log calls per variant per round
    hot_rounds: int  # hot path: interleaved rounds (short ones: see hot_path.py)
    rounds: int  # interleaved rounds (every other comparison)
    span_batches: int  # spans: batches of SPAN_BATCH spans per variant per round
    events: int  # throughput: events per variant per round
    steady_seconds: float  # worker CPU share at a steady rate
    outage_seconds: float  # memory: how long the server fails
    recovery_seconds: float  # memory: how long to watch the backlog drain afterwards


SIZES: Final = {
    "full": Sizes(2_000, 100, 15, 20, 20_000, 10.0, 60.0, 20.0),
    "quick": Sizes(1_000, 20, 5, 5, 5_000, 3.0, 10.0, 10.0),
    "smoke": Sizes(30, 2, 2, 1, 50, 0.3, 0.5, 2.0),
}


def parse_args(
    doc: str | None,
    variants: Sequence[str],
    extra: Callable[[argparse.ArgumentParser], object] | None = None,
) -> argparse.Namespace:
    """The options every benchmark script takes (and ``extra``'s, a script's own)."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    if extra is not None:
        extra(parser)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    parser.add_argument(
        "--variants",
        help=f"comma-separated subset of: {', '.join(variants)} (default: all available)",
    )
    args = parser.parse_args()
    wanted = args.variants.split(",") if args.variants else list(variants)
    unknown = set(wanted) - set(variants)
    if unknown:
        parser.error(f"unknown variant(s): {', '.join(sorted(unknown))}")
    args.wanted = wanted
    return args


def optional_module(name: str) -> Any:
    """A peer library, or None when it is not installed (its variants are then skipped).

    Imported dynamically so ``mypy --strict benchmarks`` passes without the peers.
    """
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def write_results(path: Path | None, results: dict[str, Any]) -> None:
    """Write ``results`` as JSON when ``--json`` was given."""
    if path is not None:
        path.write_text(json.dumps(results, indent=2) + "\n")


# -- nothing leaves the machine ---------------------------------------------------------


def _is_loopback(host: object) -> bool:
    if not isinstance(host, str):
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def loopback_only() -> None:
    """Refuse, in this process, any connection or name lookup that is not loopback.

    The peers (posthog, segment) are pointed at a local sink; this guard makes
    sure no feature of theirs reaches the internet anyway.
    """
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            raise ConnectionRefusedError(f"benchmark: refusing non-loopback {address!r}")
        real_connect(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_loopback(
            host.decode() if isinstance(host, bytes) else host
        ):
            raise socket.gaierror(f"benchmark: refusing to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = getaddrinfo


def quiet_deprecations() -> None:
    """The OTel SDK's LoggingHandler warns that it moved; the benchmark uses it on purpose."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)


# -- servers in a child process -----------------------------------------------------------


class ServerProcess:
    """A loopback server in a child process: ``kind`` is ``"sink"`` or ``"vibefollow"``.

    The sink answers every POST with 200 at once (posthog, segment, OTLP);
    ``vibefollow`` is ``vf_otel.testing.VibefollowServer``. Commands go over
    stdin (see ``_server_proc.py``); closing it stops the server.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._proc = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [sys.executable, str(HERE / "_server_proc.py"), kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.url = self._reply(SERVER_START_TIMEOUT)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def command(self, line: str) -> str:
        """Send one command, return the server's one-line answer."""
        assert self._proc.stdin is not None  # noqa: S101 - set by Popen(stdin=PIPE)
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()
        return self._reply(SERVER_START_TIMEOUT)

    def _reply(self, timeout: float) -> str:
        assert self._proc.stdout is not None  # noqa: S101 - set by Popen(stdout=PIPE)
        answer: list[str] = []
        reader = threading.Thread(target=lambda: answer.append(self._proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        if not answer or not answer[0]:
            self.stop()
            raise RuntimeError(f"the {self.kind} server did not answer within {timeout} s")
        return answer[0].strip()

    def stop(self) -> None:
        """Close stdin (the server exits), then wait; kill it if it will not go."""
        if self._proc.poll() is not None:
            return
        with contextlib.suppress(OSError):
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


# -- timing -----------------------------------------------------------------------------------


def interleave(
    variants: dict[str, Callable[[], float]],
    rounds: int,
    *,
    between: Callable[[str], object] | None = None,
) -> dict[str, list[float]]:
    """Run every variant once per round, rotating the order, and collect what each returns.

    Rotating means no variant always runs first (or right after a noisy one);
    ``between(name)`` runs untimed after each variant (e.g. to drain its queue).
    """
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(variants[name]())
            if between is not None:
                between(name)
    return samples


def per_call(call: Callable[[], object], calls: int) -> float:
    """Seconds per call of ``call``, over ``calls`` calls."""
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls


def summarise(samples: dict[str, list[float]], reference: str) -> dict[str, dict[str, Any]]:
    """Median per variant and the median of the per-round ratios to ``reference``.

    The ratio is taken round by round (same moment, same machine load) and then
    the median of those, which is steadier on a shared machine than a ratio of medians.
    ``spread`` (see :func:`spread`) says how noisy a variant's own samples were.
    """
    base = samples.get(reference)
    out: dict[str, dict[str, Any]] = {}
    for name, values in samples.items():
        median = statistics.median(values)
        row: dict[str, Any] = {
            "median": median,
            "samples": values,
            "spread": spread(values),
        }
        if base is not None:
            pairs = zip(values, base, strict=True)
            ratios = [v / b for v, b in pairs if v and b]
            row["ratio"] = statistics.median(ratios) if ratios else None
        out[name] = row
    return out


def spread(values: Sequence[float]) -> float:
    """The interquartile range of ``values`` over their median: how far apart the middle
    half of the rounds were (0 when fewer than two). Not (max - min): with a hundred
    rounds, one round a neighbour disturbed would be all it showed."""
    median = statistics.median(values) if values else 0.0
    if len(values) < 2 or not median:
        return 0.0
    low, _, high = statistics.quantiles(values, n=4)
    return (high - low) / median


def print_table(
    title: str, summary: dict[str, dict[str, Any]], unit: str, scale: float, labels: dict[str, str]
) -> None:
    """A plain-text table: variant, median, ratio."""
    print(f"\n{title}")
    print(f"{'variant':60} {unit:>14} {'ratio':>7} {'spread':>7}")
    for name, row in summary.items():
        ratio = row.get("ratio")
        shown = "" if ratio is None else f"{ratio:6.2f}x"
        print(
            f"{labels.get(name, name):60} {row['median'] * scale:14.2f} {shown:>7}"
            f" {row['spread']:6.0%}"
        )


# -- resource use ---------------------------------------------------------------------------


def thread_cpu_seconds(thread: threading.Thread) -> float:
    """CPU time (user + system) one thread of this process has used so far.

    Nanosecond resolution through the thread's CPU clock; /proc (10 ms ticks) as a fallback.
    """
    if thread.ident is None:
        raise RuntimeError(f"thread {thread.name} has not started")
    with contextlib.suppress(AttributeError, OSError):
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1]
    utime, stime = fields.split()[11:13]
    return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")


def find_thread(prefix: str) -> threading.Thread:
    """The live thread whose name starts with ``prefix``."""
    for thread in threading.enumerate():
        if thread.name.startswith(prefix):
            return thread
    raise LookupError(f"no thread named {prefix}*")


def rss_bytes() -> int:
    """This process's resident set size now (Linux /proc; peak RSS elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        import resource  # noqa: PLC0415 - only where /proc is missing

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return pages * os.sysconf("SC_PAGE_SIZE")


def paced(
    rate: float,
    seconds: float,
    emit: Callable[[int], None],
    sample: Callable[[float], None] | None = None,
    every: float = 1.0,
) -> int:
    """Call ``emit(n)`` every 10 ms so that ``rate`` events/s go out for ``seconds``.

    Sleeping between ticks keeps the app thread mostly idle, as in a real
    service. ``sample(elapsed)`` runs about every ``every`` seconds. Returns how
    many events were emitted.
    """
    tick = 0.01
    started = time.monotonic()
    sent = 0
    next_sample = 0.0
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed * rate) - sent
        if due > 0:
            emit(due)
            sent += due
        if sample is not None and elapsed >= next_sample:
            sample(elapsed)
            next_sample += every
        time.sleep(tick)
    return sent
