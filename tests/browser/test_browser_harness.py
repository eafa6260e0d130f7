"""The browser harness itself: the system Chromium loads a local page, runs its script, and
saves a screenshot, so a failing page test is about the page, not the harness."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from selenium.webdriver.common.by import By

from tests.browser_support import chromium, screenshot, wait_for

PAGE = b"""<!doctype html><meta charset=utf-8><title>harness</title>
<ul id=log></ul>
<script>
const li = document.createElement("li");
li.textContent = new URLSearchParams(location.search).get("text");
document.getElementById("log").append(li);
</script>"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def page_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_chromium_runs_a_local_page_and_saves_a_screenshot(page_url: str) -> None:
    hostile = "<script>document.title='owned'</script><b>bold?</b>"
    with chromium() as driver:
        driver.get(f"{page_url}?text=" + hostile.replace("<", "%3C").replace(">", "%3E"))
        item = wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#log li"))
        assert item.text == hostile
        assert driver.title == "harness"
        assert driver.find_elements(By.CSS_SELECTOR, "#log b") == []
        path = screenshot(driver, "harness")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
