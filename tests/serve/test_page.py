"""The chat page in a real headless Chromium (Playwright): it lists the models, streams an answer, puts two
models side by side on one prompt, and a vote lands in the votes file as a preference row."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.serve.conftest import KEY

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    for candidate in (os.environ.get("LLMFORGE_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail("no Chromium for the page test: run `bash scripts/browser.sh` (scripts/test.sh does) or set "
                "LLMFORGE_CHROMIUM")


def test_page_streams_and_compares_and_votes(served):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 650})
            page.add_init_script(f"localStorage.setItem('llmforge-key', '{KEY}')")
            page.goto(served["url"] + "/")
            expect(page.locator("#model-a option")).to_have_count(2)
            expect(page.locator("#status")).to_contain_text("2 model(s)")
            page.click("details summary")  # the sampling settings
            page.fill("#max-tokens", "12")
            page.select_option("#model-a", "lora")
            page.fill("#prompt", "What is 3 + 4?")
            page.click("#send")
            answer = page.locator("#pane-a .msg.assistant").first
            expect(page.locator("#status")).to_have_text("done", timeout=60_000)
            assert answer.inner_text().strip()
            page.check("#compare")
            page.select_option("#model-a", "base")
            page.select_option("#model-b", "lora")
            page.fill("#prompt", "What is 2 + 5?")
            page.click("#send")
            expect(page.locator("#votes")).to_be_visible(timeout=60_000)
            left = page.locator("#pane-a .msg.assistant").last.inner_text()
            right = page.locator("#pane-b .msg.assistant").last.inner_text()
            assert left and right and left != right
            page.click("#vote-b")
            expect(page.locator("#status")).to_contain_text("vote saved")
        finally:
            browser.close()
    row = json.loads(served["votes"].read_text().splitlines()[-1])
    assert row["chosen_model"] == "lora" and row["rejected_model"] == "base"
    assert row["prompt"][-1] == {"role": "user", "content": "What is 2 + 5?"}
    assert row["chosen"][0]["content"].strip() == right.strip()
    assert row["rejected"][0]["content"].strip() == left.strip()
