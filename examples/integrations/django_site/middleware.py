"""Middleware: who the user is (a stand-in for auth), and vf-otel's user for the view."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse

import vf_otel

Middleware = Callable[[HttpRequest], HttpResponse]

#: The stand-in for a real session lookup.
TOKENS = {"token-ada": 42, "token-bo": 7}


@dataclass(frozen=True)
class DemoUser:
    """Just enough of django.contrib.auth's user interface for the example."""

    pk: int | None
    is_authenticated: bool


ANONYMOUS = DemoUser(pk=None, is_authenticated=False)


def header_auth_middleware(get_response: Middleware) -> Middleware:
    """Set ``request.user`` from a bearer token, as AuthenticationMiddleware would."""

    def middleware(request: HttpRequest) -> HttpResponse:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        pk = TOKENS.get(token) if scheme == "Bearer" else None
        request.user = DemoUser(pk=pk, is_authenticated=True) if pk else ANONYMOUS  # type: ignore[assignment]
        return get_response(request)

    return middleware


def vibefollow_user_middleware(get_response: Middleware) -> Middleware:
    """Run the view (and the middleware below this one) inside ``vf_otel.user(...)``.

    The external user id is ``usr_<pk>``: use whatever id your Vibefollow project
    knows the user by. Anonymous requests run with no user, so their tagged records
    are dropped (``missing_user``) unless they name one with ``vf_user``.
    """

    def middleware(request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        user_id = f"usr_{user.pk}" if user is not None and user.is_authenticated else None
        with vf_otel.user(user_id):
            return get_response(request)

    return middleware
