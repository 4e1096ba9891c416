"""Views and URLs of the example project."""

from __future__ import annotations

import logging

from django.http import HttpRequest, JsonResponse
from django.urls import path

log = logging.getLogger("shop.views")


def export(request: HttpRequest) -> JsonResponse:
    """Tagged with vf_event only: the user comes from the middleware."""
    log.info("export", extra={"vf_event": "feature_used", "vf_properties": {"feature": "csv"}})
    return JsonResponse({"ok": True})


def signup(request: HttpRequest, user_id: str) -> JsonResponse:
    """Names its user explicitly (nobody is signed in yet) and upserts traits."""
    log.info(
        "user_signed_up",
        extra={"vf_user": user_id, "vf_traits": {"email": f"{user_id}@example.com"}},
    )
    return JsonResponse({"created": user_id}, status=201)


def health(request: HttpRequest) -> JsonResponse:
    """Untagged: not an event."""
    log.info("health checked")
    return JsonResponse({"ok": True})


urlpatterns = [
    path("exports", export),
    path("signup/<str:user_id>", signup),
    path("health", health),
]
