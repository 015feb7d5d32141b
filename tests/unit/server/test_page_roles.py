"""A dashboard page a role may not open answers with a page that says so (403), not the API's JSON."""

from __future__ import annotations

from types import SimpleNamespace

from fastapi import FastAPI
from fastapi.testclient import TestClient

from keel.keys import Principal, Role
from keel.server.errors import install_error_handlers
from keel.server.ui import pages
from keel.server.ui.session import COOKIE, Sessions

VIEWER = Principal("key_v", "keel_v", "acme", Role.VIEWER)


class OneKey:
    def principal(self, key_id: str) -> Principal | None:
        return VIEWER if key_id == VIEWER.key_id else None


def test_a_viewer_opening_the_review_queue_gets_a_page_naming_the_roles_that_may() -> None:
    app = FastAPI()
    install_error_handlers(app)
    app.add_exception_handler(pages.PageDenied, pages.denied_page)
    app.state.runtime = SimpleNamespace(keys=OneKey())
    app.state.ui_sessions = sessions = Sessions("s" * 32)

    @app.get("/ui/reviews")
    def reviews(me: pages.Reviewer) -> str:
        return "queue"

    client = TestClient(app)
    client.cookies.set(COOKIE, sessions.issue(VIEWER.key_id))
    response = client.get("/ui/reviews")
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert "logged in as <strong>viewer</strong>" in response.text
    assert "admin, reviewer roles" in response.text
    # The navigation for the viewer's own role is there, without the review queue.
    assert 'href="/ui/traces"' in response.text and 'href="/ui/reviews"' not in response.text
