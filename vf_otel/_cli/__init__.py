"""The ``vf-otel`` command: ``devserver``, ``doctor``, ``send``, ``spool``, ``rules`` and
``relay`` (docs/cli.md).

Also ``python -m vf_otel``. Standard-library argparse only: no dependency beyond the
library's own.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from .._version import __version__
from . import _devserver, _doctor, _relay, _rules_cmd, _send, _spool_cmd
from ._exit import DOCS_URL, ExitCode

__all__ = ["ExitCode", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The parser for every command; each sets ``run`` to the function that executes it."""
    parser = argparse.ArgumentParser(
        prog="vf-otel",
        description="Tools for vf-otel: a local dev server, a configuration doctor, send, "
        "the durable spool, mapping rules, and the OTLP relay.",
        epilog=f"Exit statuses and every option: {DOCS_URL}",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the URL on one line
    )
    parser.add_argument("--version", action="version", version=f"vf-otel {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (_devserver, _doctor, _send, _spool_cmd, _rules_cmd, _relay):
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``vf-otel`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors end in sys.exit()
        return _status(exc.code)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return int(run(args))
    except KeyboardInterrupt:
        print("vf-otel: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`vf-otel devserver | head -3`): stop quietly, as a Unix
        # tool killed by SIGPIPE would, instead of a traceback. Standard output is pointed
        # at /dev/null so the interpreter's last flush of it cannot fail again at exit.
        _silence_stdout()
        return ExitCode.BROKEN_PIPE


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (a test's StringIO): nothing to do
        pass


def _status(code: object) -> int:
    if code is None:
        return ExitCode.OK
    return code if isinstance(code, int) else ExitCode.FAILED
