"""converse.js in headless Chromium over BOSH (XEP-0206) instead of WebSocket.

The page is served from another origin than /http-bind, so the browser's CORS checks take
part: the server allows the page's origin from its configuration. The browser pieces and the
way converse.js is driven are those of :mod:`test_client_conversejs`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import RawClient, ServerProcess

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_client_conversejs import (  # noqa: E402
    PASSWORD,
    USER,
    Browser,
    ConverseSession,
    PageServer,
    _client_installed,  # noqa: F401 - the autouse fixture that skips without the browser
)


@pytest.fixture
def pages() -> Iterator[PageServer]:
    server = PageServer()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def bosh_server(tmp_path: Path, pages: PageServer) -> Iterator[ServerProcess]:
    origin = f"http://127.0.0.1:{pages.server_address[1]}"
    proc = ServerProcess(tmp_path, extra={
        "listeners": [{"kind": "c2s", "address": "127.0.0.1", "port": 0},
                      {"kind": "c2s_tls", "address": "127.0.0.1", "port": 0},
                      {"kind": "websocket", "address": "127.0.0.1", "port": 0}],
        "bosh": {"cors_origins": [origin]},
    })
    proc.start()
    proc.add_user(USER, PASSWORD)
    proc.add_user("dan")
    try:
        yield proc
    finally:
        if proc.alive():
            proc.kill()


def test_conversejs_chats_over_bosh(tmp_path: Path, pages: PageServer,
                                    bosh_server: ServerProcess) -> None:
    bosh_url = f"http://127.0.0.1:{bosh_server.ports['websocket']}/http-bind"
    page = (f"http://127.0.0.1:{pages.server_address[1]}/index.html"
            f"?bosh_service_url={bosh_url}")
    browser = Browser(tmp_path)
    session = ConverseSession(browser)
    try:
        session.log_in(page, f"{USER}@localhost", PASSWORD)
        assert browser.js("window.pubsubdTest.api.connection.get().isType('bosh')") is True
        dan = RawClient(bosh_server)
        dan.login("dan")
        dan.send("<presence/>")  # RFC 6121 §8.5.2.1.1: a chat to the bare JID reaches dan
        session.open_chat("dan@localhost")
        dan.send(f"<message to='{USER}@localhost' type='chat'><body>over BOSH</body></message>")
        session.wait_for_message("dan@localhost", lambda text: text == "over BOSH",
                                 "dan's message")
        session.say("dan@localhost", "and back")
        assert "and back" in dan.read_until(b"and back</body>")
        dan.close()
    finally:
        browser.screenshot(tmp_path / "conversejs-bosh.png")
        browser.close()
