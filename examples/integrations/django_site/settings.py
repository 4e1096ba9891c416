"""Settings for the example project: only what the vf-otel integration needs."""

from __future__ import annotations

from typing import Any

SECRET_KEY = "example-only-not-secret"  # a demo project, never deployed
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
ROOT_URLCONF = "django_site.urls"
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, Any] = {}
USE_TZ = True

MIDDLEWARE = [
    # Stand-in for django.contrib.auth's AuthenticationMiddleware: sets request.user.
    "django_site.middleware.header_auth_middleware",
    # Must come after authentication: it reads request.user.
    "django_site.middleware.vibefollow_user_middleware",
]

# An ordinary LOGGING dict: vf-otel is one more handler. No options here, so the
# handler reads VIBEFOLLOW_API_KEY (and any other VIBEFOLLOW_*) from the environment.
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        "vibefollow": {"class": "vf_otel.VibefollowHandler", "level": "INFO"},
    },
    # The root logger's level filters before any handler: INFO, or INFO records never
    # reach the handler (the default root level is WARNING).
    "root": {"level": "INFO", "handlers": ["console", "vibefollow"]},
}
