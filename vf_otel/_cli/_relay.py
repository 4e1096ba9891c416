"""``vf-otel relay``: serve the OTLP/HTTP relay (``vf_otel.relay``) with uvicorn.

Its settings reach each uvicorn worker through the environment (the workers build
the app with ``vf_otel.relay:from_environment``), so they are checked here first:
a bad one is a clear message and an exit status, not a traceback per worker.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from typing import Final

from .._config import resolve_settings
from ._exit import ExitCode, docs_url

__all__ = ["DEFAULT_PORT", "add_parser", "run"]

#: OTLP/HTTP's own default port: a Collector's ``otlphttp`` exporter needs only the host.
DEFAULT_PORT: Final = 4318
_FACTORY: Final = "vf_otel.relay:from_environment"
_INSTALL: Final = "the relay needs its extra: pip install 'vf-otel[relay]'"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``relay``."""
    parser = commands.add_parser(
        "relay",
        help="receive OTLP/HTTP from a fleet or a Collector and deliver its tagged telemetry",
        description=(
            "Serve POST /v1/traces and /v1/logs (OTLP/HTTP, protobuf or JSON) and deliver "
            "the tagged spans, span events and log records as Vibefollow events (and the "
            "untagged ones mapping rules name: --rules). Clients "
            "send 'Authorization: Bearer $VIBEFOLLOW_RELAY_TOKEN'; delivery is configured "
            "by the VIBEFOLLOW_* variables (set VIBEFOLLOW_SPOOL_PATH to acknowledge "
            f"batches during an API outage). Docs: {docs_url('relay.md')}"
        ),
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s; any other than loopback needs TLS, "
        "or --insecure-no-tls)",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port, OTLP/HTTP's (default: %(default)s)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, metavar="N", help="uvicorn worker processes (default: 1)"
    )
    parser.add_argument("--ssl-certfile", metavar="PEM", help="serve HTTPS with this certificate")
    parser.add_argument("--ssl-keyfile", metavar="PEM", help="the certificate's private key")
    parser.add_argument(
        "--insecure-no-tls",
        action="store_true",
        help="listen on a non-loopback address without TLS (behind a TLS-terminating proxy)",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        metavar="N",
        help="largest request body once decompressed (default: 16 MiB)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        metavar="S",
        help="seconds a batch waits to be delivered or spooled before a 503 (default: 10)",
    )
    parser.add_argument(
        "--rules",
        metavar="FILE",
        help="mapping rules (TOML, or YAML) for untagged spans and log records "
        "(default: $VIBEFOLLOW_RULES)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Check the settings, then serve until SIGTERM / Ctrl-C (what waits is spooled)."""
    problem = _check(args)
    if problem is not None:
        code, message = problem
        print(f"vf-otel relay: {message}", file=sys.stderr)
        return code
    try:
        import uvicorn  # noqa: PLC0415 - an optional extra, imported when used
    except ImportError:
        print(f"vf-otel relay: {_INSTALL}", file=sys.stderr)
        return ExitCode.FAILED
    if args.max_body_bytes is not None:
        os.environ["VIBEFOLLOW_RELAY_MAX_BODY_BYTES"] = str(args.max_body_bytes)
    if args.wait is not None:
        os.environ["VIBEFOLLOW_RELAY_WAIT"] = str(args.wait)
    if args.rules:
        # Absolute: each worker loads the file again, whatever directory it runs in.
        os.environ["VIBEFOLLOW_RULES"] = os.path.abspath(args.rules)
    uvicorn.run(
        _FACTORY,
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        access_log=False,
        log_level="info",
    )
    return ExitCode.OK


def _check(args: argparse.Namespace) -> tuple[ExitCode, str] | None:
    """The first problem with the settings, or None."""
    try:
        import vf_otel.relay  # noqa: F401, PLC0415 - is the extra installed?
    except ImportError:
        return ExitCode.FAILED, _INSTALL
    if len(os.environ.get("VIBEFOLLOW_RELAY_TOKEN", "")) < 16:
        return ExitCode.BAD_CONFIG, (
            "set VIBEFOLLOW_RELAY_TOKEN (16 characters or more): the token clients must send"
        )
    if args.workers < 1 or not 0 <= args.port <= 65535:
        return ExitCode.USAGE, "--workers must be 1 or more, --port 0 to 65535"
    if args.wait is not None and not 0 < args.wait <= 3600:
        return ExitCode.USAGE, "--wait must be more than 0 and at most 3600 seconds"
    if args.max_body_bytes is not None and not 1024 <= args.max_body_bytes <= 2**31:
        return ExitCode.USAGE, "--max-body-bytes must be between 1024 and 2**31"
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        return ExitCode.USAGE, "--ssl-certfile and --ssl-keyfile go together"
    if not (args.ssl_certfile or args.insecure_no_tls or _is_loopback(args.host)):
        return ExitCode.USAGE, (
            f"{args.host} is not a loopback address: serve TLS (--ssl-certfile, --ssl-keyfile) "
            "or, behind a proxy that does, pass --insecure-no-tls"
        )
    try:
        # The rules file is loaded and checked here too: a bad rule is one message.
        settings = resolve_settings(**({"rules": args.rules} if args.rules else {}))
    except ValueError as exc:
        return ExitCode.BAD_CONFIG, f"invalid option: {exc}"
    if settings.api_key is None and settings.enabled:
        return ExitCode.NO_API_KEY, "no API key: set VIBEFOLLOW_API_KEY"
    if settings.api_key == os.environ["VIBEFOLLOW_RELAY_TOKEN"]:
        return ExitCode.BAD_CONFIG, "VIBEFOLLOW_RELAY_TOKEN must not be the Vibefollow API key"
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere
