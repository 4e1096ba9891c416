"""``logging.config.fileConfig``: an INI file names the handler; settings come from the env.

    pip install vf-otel
    VIBEFOLLOW_API_KEY=sk_live_... python examples/integrations/fileconfig_ini.py
    python examples/integrations/fileconfig_ini.py     # a local server when the key is unset

The INI file is ``logging.ini`` next to this script. Options may also go in the
handler section as ``kwargs={"batch_size": 100}``; an explicit option wins over its
``VIBEFOLLOW_*`` variable.
"""

from __future__ import annotations

import logging
import logging.config
from pathlib import Path

from demo_server import report, vibefollow_env

INI_FILE = Path(__file__).with_name("logging.ini")


def main() -> None:
    """Load the INI file, log a tagged and an untagged record, show what arrived."""
    with vibefollow_env() as server:
        logging.config.fileConfig(INI_FILE, disable_existing_loggers=False)
        log = logging.getLogger("shop.accounts")
        log.info("user_signed_up", extra={"vf_user": "usr_42", "vf_properties": {"plan": "trial"}})
        log.info("cache warmed")  # untagged: not an event
        report(server)


if __name__ == "__main__":
    main()
