"""loguru: the tags of ``bind``, keywords and ``extra=`` reach the local server.

Through the handler added to loguru (``logger.add(VibefollowHandler())``) and through
``vf_otel.loguru_sink``, each in a real loguru process.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

import vf_otel
from vf_otel.testing import VibefollowServer

from .conftest import HandlerFactory, run_script

#: Each form of tagging loguru offers, with its default (time | level | place) format.
APP = """\
import json
import sys

from loguru import logger

import vf_otel

handler = vf_otel.VibefollowHandler()
logger.remove()
logger.add(handler if sys.argv[1] == "handler" else vf_otel.loguru_sink(handler))
logger.bind(vf_user="usr_1").info("signup")
logger.bind(vf_user="usr_2", vf_properties={"plan": "pro"}).info("upgrade")
logger.info("signup", vf_user="usr_3", vf_properties={"plan": "trial"})
logger.info("invited {n} people", n=4, vf_user="usr_4")
logger.info("signup", extra={"vf_user": "usr_5", "vf_properties": {"via": "extra"}})
logger.bind(vf_user="usr_6").info("ignored name", vf_event="checkout", vf_traits={"tier": 2})
logger.info("untagged")
logger.bind(request_id="r1").warning("untagged too {}", 1)
print(json.dumps({"flushed": handler.flush(10), "enqueued": handler.stats().enqueued}))
"""

EXPECTED = [
    ("signup", "usr_1", {}),
    ("upgrade", "usr_2", {"plan": "pro"}),
    ("signup", "usr_3", {"plan": "trial"}),
    ("invited 4 people", "usr_4", {}),
    ("signup", "usr_5", {"via": "extra"}),
    ("checkout", "usr_6", {}),
]


@pytest.mark.slow
@pytest.mark.parametrize("way", ["handler", "sink"])
def test_every_loguru_tagging_form_is_delivered(
    vibefollow_server: VibefollowServer, tmp_path: Path, way: str
) -> None:
    """bind, keywords, extra= and vf_event: six events, named by loguru's message, none lost."""
    pytest.importorskip("loguru", reason="loguru is not installed")
    done = run_script(vibefollow_server, tmp_path, APP, way)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"flushed": True, "enqueued": 6}
    events = vibefollow_server.events
    assert [(e["name"], e["external_user_id"], e["properties"]) for e in events] == EXPECTED
    assert [u["traits"] for u in vibefollow_server.users] == [{"tier": 2}]


def test_loguru_sink_without_a_handler_is_a_value_error(clean_logging: None) -> None:
    """loguru_sink() with no VibefollowHandler on the root logger: ValueError at once."""
    with pytest.raises(ValueError, match="configure"):
        vf_otel.loguru_sink()


def test_an_extra_dict_on_a_stdlib_record_is_read_from_a_copy(
    vibefollow_server: VibefollowServer,
    make_handler: HandlerFactory,
    app_logger: logging.Logger,
) -> None:
    """A record not built by loguru, with an ``extra`` dict: sent, the record left unchanged."""
    handler = make_handler()
    seen: list[logging.LogRecord] = []
    app_logger.addHandler(handler)
    app_logger.addHandler(Keep(seen))
    app_logger.info("signup %s", "now", extra={"extra": {"vf_user": "usr_9"}})
    assert handler.flush(timeout=10)
    assert [(e["name"], e["external_user_id"]) for e in vibefollow_server.events] == [
        ("signup %s", "usr_9")
    ]
    assert not hasattr(seen[0], "vf_user")


class Keep(logging.Handler):
    """Keep every record it is given."""

    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__()
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        """Keep ``record``."""
        self.into.append(record)


def test_a_handler_filter_sees_loguru_records_first(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory
) -> None:
    """A filter on the handler drops or passes loguru messages; the rest keep loguru's name."""
    loguru = pytest.importorskip("loguru", reason="loguru is not installed")
    handler = make_handler()
    handler.addFilter(lambda record: "drop" not in record.getMessage())
    sink_id = loguru.logger.add(handler)
    try:
        loguru.logger.bind(vf_user="usr_1").info("signup")
        loguru.logger.bind(vf_user="usr_2").info("drop me")
    finally:
        loguru.logger.remove(sink_id)  # closes (drains) the handler, as loguru does
    events = vibefollow_server.events
    assert [(e["name"], e["external_user_id"]) for e in events] == [("signup", "usr_1")]
