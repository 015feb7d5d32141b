"""The dashboard's knowledge page in a real headless Chromium: an editor uploads a document, follows its
job, finds it by search and deletes it; a document that cannot be read shows why its job item failed; a
viewer sees the page without the actions, and a form post without the CSRF token is refused."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import ARTIFACTS
from tests.integration.live import create_key, free_port, start_server

GUIDE = b"# Saddle care\n\nWipe the leather saddle with a damp cloth and treat it with wax every spring.\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    data_dir = tmp_path_factory.mktemp("keel-ui-knowledge")
    keys = {role: create_key(data_dir, "shop", role) for role in ("app", "viewer")}
    port = free_port()
    process = start_server(data_dir, port)
    try:
        yield {"base": f"http://127.0.0.1:{port}", **keys}
    finally:
        process.terminate()
        process.wait(timeout=60)


def knowledge_page(browser: Browser, base: str, key: str) -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base}/ui/login")
    page.get_by_label("API key").fill(key)
    page.locator("input[type=submit]").click()
    expect(page).to_have_url(f"{base}/ui/")
    page.goto(f"{base}/ui/knowledge")
    return page


def upload(page: Page, name: str, data: bytes) -> None:
    page.get_by_label("document").set_input_files({"name": name, "mimeType": "text/plain", "buffer": data})
    page.locator("#upload button").click()
    expect(page).to_have_url(re.compile(r"/ui/knowledge/jobs/"))
    deadline = time.monotonic() + 120
    while page.locator("#job-status").inner_text() in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.5)
        page.reload()


def test_an_editor_uploads_searches_and_deletes_a_document(browser: Browser, server: dict[str, str]) -> None:
    page = knowledge_page(browser, server["base"], server["app"])
    upload(page, "saddle-care.md", GUIDE)
    expect(page.locator("#job-status")).to_have_text("succeeded")
    expect(page.locator("#job-items .item-done")).to_contain_text("saddle-care.md")

    page.get_by_role("link", name="← Knowledge base").click()
    row = page.locator("tr", has_text="saddle-care.md")
    expect(row).to_contain_text("Saddle care")
    page.get_by_label("search the knowledge base").fill("how do I clean a leather saddle")
    page.locator("#search").click()
    expect(page.locator("#search-results")).to_contain_text("damp cloth")
    page.screenshot(path=str(ARTIFACTS / "knowledge-search.png"), full_page=True)

    page.goto(f"{server['base']}/ui/knowledge")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="delete saddle-care.md").click()
    expect(page).to_have_url(f"{server['base']}/ui/knowledge")
    expect(page.locator("tr", has_text="saddle-care.md")).to_have_count(0)
    page.close()


def test_a_failed_item_shows_why(browser: Browser, server: dict[str, str]) -> None:
    page = knowledge_page(browser, server["base"], server["app"])
    upload(page, "manual.pdf", b"this is not a PDF")
    expect(page.locator("#job-status")).to_have_text("failed")
    expect(page.locator("#job-failed")).to_have_text("1 failed")
    failed = page.locator("#job-items .item-failed")
    expect(failed).to_contain_text("manual.pdf")
    expect(failed.locator(".item-error")).not_to_be_empty()
    page.screenshot(path=str(ARTIFACTS / "knowledge-job-failed.png"), full_page=True)
    page.close()


def test_a_viewer_sees_the_page_without_its_actions(browser: Browser, server: dict[str, str]) -> None:
    page = knowledge_page(browser, server["base"], server["viewer"])
    expect(page.get_by_role("heading", name="Knowledge base")).to_be_visible()
    expect(page.locator("#upload")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)
    page.goto(f"{server['base']}/ui/knowledge/search?q=saddle")
    expect(page.get_by_role("heading", name="This page is not open to your role")).to_be_visible()
    page.close()


def test_knowledge_forms_need_the_csrf_token(server: dict[str, str]) -> None:
    with httpx.Client(base_url=server["base"]) as client:
        login = client.post("/ui/login", data={"api_key": server["app"]})
        assert login.status_code == 303
        files = {"file": ("x.txt", b"hello")}
        assert client.post("/ui/knowledge/upload", data={"csrf": "forged"}, files=files).status_code == 403
        assert client.post("/ui/knowledge/documents/any/delete", data={"csrf": "forged"}).status_code == 403
