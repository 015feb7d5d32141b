"""The dashboard in a real headless Chromium (Debian's, driven by Playwright): log in, read the overview,
open a trace, and decide a review item. Screenshots land in test-artifacts/ for a person to look at."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import ARTIFACTS
from tests.integration.live import create_key, free_port, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    data_dir = tmp_path_factory.mktemp("keel-ui")
    app_key = create_key(data_dir, "demo", "app")
    reviewer_key = create_key(data_dir, "demo", "reviewer")
    admin_key = create_key(data_dir, "demo", "admin")
    port = free_port()
    process = start_server(data_dir, port)
    base = f"http://127.0.0.1:{port}"
    try:
        # Traffic for the pages to show: a chat completion and an escalated copilot reply.
        headers = {"Authorization": f"Bearer {app_key}"}
        hello = {"model": "keel-local", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8}
        httpx.post(f"{base}/v1/chat/completions", headers=headers, timeout=120, json=hello)
        reply = httpx.post(
            f"{base}/v1/support/replies",
            headers=headers,
            timeout=120,
            json={"message": "I want to talk to a person, please."},
        ).json()
        assert reply["status"] == "escalated", reply
        # A second item, claimed by the reviewer, for the administrator's controls.
        held = httpx.post(
            f"{base}/v1/support/replies",
            headers=headers,
            timeout=120,
            json={"message": "Can I speak to a human?"},
        ).json()
        assert held["status"] == "escalated", held
        claim = httpx.post(
            f"{base}/v1/reviews/{held['review_id']}/claim",
            headers={"Authorization": f"Bearer {reviewer_key}"},
        )
        assert claim.status_code == 200, claim.text
        yield {
            "base": base,
            "reviewer": reviewer_key,
            "admin": admin_key,
            "app": app_key,
            "review_id": reply["review_id"],
            "held_review_id": held["review_id"],
        }
    finally:
        process.terminate()
        process.wait(timeout=60)


def log_in(page: Page, base: str, key: str) -> None:
    page.goto(f"{base}/ui/")
    expect(page).to_have_url(f"{base}/ui/login")
    page.get_by_label("API key").fill(key)
    page.locator("input[type=submit]").click()
    expect(page).to_have_url(f"{base}/ui/")


def test_login_rejects_a_bad_key(browser: Browser, server: dict[str, str]) -> None:
    page = browser.new_page()
    page.goto(f"{server['base']}/ui/login")
    page.get_by_label("API key").fill("keel_wrong")
    page.locator("input[type=submit]").click()
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    page.close()


def test_overview_trace_and_review(browser: Browser, server: dict[str, str]) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, server["base"], server["reviewer"])
    expect(page.get_by_role("heading", name="Overview · last 14 days")).to_be_visible()
    expect(page.locator("[data-metric=requests]")).not_to_have_text("0")
    expect(page.locator("svg.chart")).to_have_count(4)
    page.screenshot(path=str(ARTIFACTS / "overview.png"), full_page=True)

    page.get_by_role("link", name="Traces").click()
    page.locator("a.trace-link", has_text="POST /v1/support/replies").first.click()
    expect(page.locator(".span-row[data-span='support.reply']")).to_be_visible()
    expect(page.locator(".span-row[data-span='retrieve']")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "trace.png"), full_page=True)

    page.goto(f"{server['base']}/ui/reviews/{server['review_id']}")
    expect(page.locator("#question")).to_have_text("I want to talk to a person, please.")
    page.locator("#claim").click()
    expect(page.locator("#review-status")).to_have_text("claimed")
    expect(page.locator("#claim-holder")).to_have_text("you")
    expect(page.locator("#admin-controls")).to_have_count(0)
    page.locator("#approve").click()
    expect(page.locator("#review-status")).to_have_text("approved")
    page.screenshot(path=str(ARTIFACTS / "review.png"), full_page=True)
    page.close()


def test_an_admin_sees_who_holds_a_claim_and_releases_and_reassigns_it(
    browser: Browser, server: dict[str, str]
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, server["base"], server["admin"])
    page.goto(f"{server['base']}/ui/reviews/{server['held_review_id']}")
    reviewer_prefix = server["reviewer"][:12]
    expect(page.locator("#claim-holder")).to_contain_text(reviewer_prefix)
    expect(page.locator("#claim-expires")).to_contain_text("UTC")
    # Held by someone else and not lapsed: nothing to claim, but an administrator may step in.
    expect(page.locator("#claim")).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "review-admin.png"), full_page=True)
    page.locator("#release").click()
    expect(page.locator("#review-status")).to_have_text("pending")
    expect(page.locator("#claim-holder")).to_have_count(0)
    page.get_by_label("reviewer").select_option(label=f"{reviewer_prefix}… · reviewer")
    page.locator("#reassign").click()
    expect(page.locator("#review-status")).to_have_text("claimed")
    expect(page.locator("#claim-holder")).to_contain_text(reviewer_prefix)
    page.close()


def test_an_app_key_cannot_open_the_review_queue(browser: Browser, server: dict[str, str]) -> None:
    page = browser.new_page()
    log_in(page, server["base"], server["app"])
    response = page.goto(f"{server['base']}/ui/reviews")
    assert response is not None and response.status == 403
    page.close()


def test_forged_form_posts_are_refused(server: dict[str, str]) -> None:
    with httpx.Client(base_url=server["base"], follow_redirects=False) as client:
        login = client.post("/ui/login", data={"api_key": server["reviewer"]})
        assert login.status_code == 303
        forged = client.post(f"/ui/reviews/{server['review_id']}/claim", data={"csrf": "forged"})
        assert forged.status_code == 403


def test_the_evaluations_page_lists_runs_and_opens_a_report(browser: Browser, server: dict[str, str]) -> None:
    base, headers = server["base"], {"Authorization": f"Bearer {server['app']}"}
    items = [{"input": "How long does a refund take?", "expected_sources": ["help-center/refunds.md"]}]
    dataset = {"name": "ui", "items": items}
    created = httpx.post(f"{base}/v1/evals/datasets", headers=headers, json=dataset)
    assert created.status_code == 201, created.text
    request = {"dataset": "ui", "target": "retrieval"}
    run = httpx.post(f"{base}/v1/evals/runs", headers=headers, json=request).json()
    for _ in range(600):
        if httpx.get(f"{base}/v1/evals/runs/{run['id']}", headers=headers).json()["status"] == "succeeded":
            break
        time.sleep(0.1)
    page = browser.new_page()
    log_in(page, base, server["admin"])
    page.get_by_role("link", name="Evaluations").click()
    expect(page.get_by_role("heading", name="Evaluations")).to_be_visible()
    expect(page.locator("#datasets")).to_contain_text("ui")
    page.get_by_role("link", name=run["id"]).click()
    expect(page.get_by_role("heading", name=f"Evaluation run {run['id']}")).to_be_visible()
    expect(page.locator("#metrics")).to_contain_text("recall@5")
    page.close()
