"""Django: LOGGING with vf_otel.VibefollowHandler, and the user from ``request.user``.

    pip install vf-otel django
    python examples/integrations/django_demo.py     # a few requests through django.test.Client

The project is :mod:`django_site` next to this file; in a real deployment the same
settings run under ``DJANGO_SETTINGS_MODULE=django_site.settings`` with any server.
"""

from __future__ import annotations

import os

import django
from demo_server import report, vibefollow_env
from django.test import Client


def main() -> None:
    """Set Django up (which applies settings.LOGGING), send requests, show what arrived."""
    with vibefollow_env() as server:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_site.settings")
        django.setup()
        client = Client()
        client.post("/exports", headers={"Authorization": "Bearer token-ada"})
        client.post("/signup/usr_9")
        client.post("/exports")  # anonymous: no user, dropped as missing_user
        client.get("/health")
        report(server)


if __name__ == "__main__":
    main()
