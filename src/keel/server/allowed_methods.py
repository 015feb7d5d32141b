"""The `Allow` header of a 405: every method some route serves at the path.

Starlette answers a method a path does not serve with the methods of the first route that matched the
path alone, so a path served by two routes (`GET` and `POST /v1/admin/keys`) advertised only one."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import BaseRoute, Match, Route


def allowed_methods(request: Request) -> list[str]:
    """The methods of every route whose path matches the request's, sorted."""
    routes: list[BaseRoute] = list(request.app.router.routes)
    methods: set[str] = set()
    for route in routes:
        if not isinstance(route, Route) or not route.methods:
            continue
        match, _ = route.matches(request.scope)
        if match in (Match.FULL, Match.PARTIAL):
            methods |= route.methods
    return sorted(methods)
