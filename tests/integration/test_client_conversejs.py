"""converse.js (from npm) in Debian's headless Chromium follows a feed over our WebSocket.

A person logs in through converse.js's login form, opens a chat with the feed service's command
contact ``feeds@pubsub.localhost`` and says ``subscribe <feed URL>``. converse.js refuses to chat
with a JID without a localpart, so the command contact and each feed's own contact
(``<name>@pubsub.localhost``, added to the roster by the server) are what it can use.

The browser runs ``tests/clients/conversejs/driver.mjs`` (playwright-core with the system
Chromium); it only carries out commands, and every check is made here against what converse.js
recorded: its roster (read through a tiny plugin that exposes ``_converse``) and its DOM. Each test
saves a screenshot under its pytest tmp dir (and into ``$PUBSUBD_SCREENSHOT_DIR`` when set).
``make test`` installs Chromium, Node and the npm packages; a missing piece skips the tests,
or fails them when ``PUBSUBD_REQUIRE_PEERS=1`` (as in ``make test``).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from harness import ROOT, ServerProcess

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feeds_support import FEEDS_EXTRA, ThreadedFeedServer  # noqa: E402

CLIENT_DIR = ROOT / "tests" / "clients" / "conversejs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
COMMANDS = "feeds@pubsub.localhost"
USER, PASSWORD = "carol", "secret12"
FEED_TITLE = "Converse Test Feed"
PUBLISHED = {"first-news": 1_700_000_000, "second-news": 1_700_003_600}
# A podcast-like enclosure: converse.js renders an audio player for an .mp3 URL.
ENCLOSURES = {"second-news": "http://example.org/second-news.mp3"}


def feed_document(*guids: str) -> str:
    """An RSS 2.0 feed of the entries named ``guids`` ("Entry <guid>", linking to
    :func:`link_of`, with the enclosure of ``ENCLOSURES``); an entry reads the same in every
    version of the document, so only new ones count as news."""
    items = "".join(
        f"<item><title>Entry {g}</title><link>{link_of(g)}</link>"
        f"<guid isPermaLink='false'>{g}</guid>"
        + (f"<enclosure url='{ENCLOSURES[g]}' type='audio/mpeg' length='1234'/>"
           if g in ENCLOSURES else "") +
        f"<pubDate>{formatdate(PUBLISHED[g], usegmt=True)}</pubDate>"
        f"<description>About {g}.</description></item>" for g in guids)
    return (f"<?xml version='1.0'?><rss version='2.0'><channel><title>{FEED_TITLE}</title>"
            f"<link>http://example.org/</link><description>d</description>{items}</channel></rss>")


def link_of(guid: str) -> str:
    return f"http://example.org/{guid}"


def missing_pieces() -> list[str]:
    missing = [name for name in ("node",) if shutil.which(name) is None]
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"chromium ({CHROMIUM})")
    for package in ("converse.js", "playwright-core"):
        if not (CLIENT_DIR / "node_modules" / package / "package.json").exists():
            missing.append(f"npm package {package} (npm ci in {CLIENT_DIR.relative_to(ROOT)})")
    return missing


@pytest.fixture(autouse=True)
def _client_installed() -> None:
    missing = missing_pieces()
    if missing:
        why = "converse.js test needs: " + ", ".join(missing) + " (make test installs them)"
        if os.environ.get("PUBSUBD_REQUIRE_PEERS") == "1":
            pytest.fail(why)
        pytest.skip(why)


class Browser:
    """Chromium showing converse.js, driven line by line through ``driver.mjs``."""

    def __init__(self, workdir: Path) -> None:
        home = workdir / "browser-home"
        home.mkdir(parents=True)
        self._stderr = open(workdir / "driver.stderr", "wb")
        self.proc = subprocess.Popen(
            ["node", "driver.mjs"], cwd=CLIENT_DIR, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            env={**os.environ, "HOME": str(home), "CHROMIUM": CHROMIUM},
            start_new_session=True,  # its own process group: Chromium goes with it on a kill
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        ready = self._answer(timeout=30)
        assert ready.get("ready"), ready

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put("")

    def _answer(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the browser driver did not answer within {timeout} s") from None
        if not line:
            raise AssertionError("the browser driver exited: "
                                 + Path(self._stderr.name).read_text(errors="replace")[-3000:])
        answer: dict[str, Any] = json.loads(line)
        return answer

    def call(self, op: str, **args: Any) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        answer = self._answer(timeout=30)
        if "error" in answer:
            raise AssertionError(f"browser {op} {args}: {answer['error']}")
        return answer["value"]

    def js(self, expression: str) -> Any:
        return self.call("eval", expression=expression)

    def screen(self) -> str:
        return str(self.js("document.body.innerText"))

    def wait_for(self, expression: str, what: str, timeout: float = 20.0,
                 accept: Callable[[Any], bool] = bool) -> Any:
        """Evaluate ``expression`` in the page until ``accept`` takes its value; fail with what
        is on screen."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(expression)
            if accept(value):
                return value
            if time.monotonic() > deadline:
                console = "\n".join(self.call("console")[-25:])
                raise AssertionError(f"{what} — not seen within {timeout:.0f} s.\n"
                                     f"Last value: {value!r}\n"
                                     f"On screen:\n{self.screen()}\n"
                                     f"Browser console (last lines):\n{console}")
            time.sleep(0.2)

    def screenshot(self, path: Path) -> None:
        self.call("screenshot", path=str(path))
        shots = os.environ.get("PUBSUBD_SCREENSHOT_DIR")
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(shots) / path.name)

    def close(self) -> None:
        try:
            if self.proc.poll() is None and self.proc.stdin is not None:
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.close()
            self.proc.wait(15)
        except (OSError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._stderr.close()


class ConverseSession:
    """What a person does in converse.js, in the terms of its page."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser

    def log_in(self, page_url: str, jid: str, password: str) -> None:
        b = self.browser
        b.call("goto", url=page_url)
        b.wait_for("!!document.querySelector('#converse-login-jid')", "the login form")
        b.call("fill", selector="#converse-login-jid", text=jid)
        b.call("fill", selector="#converse-login-password", text=password)
        b.call("click", selector="#converse-login button[type=submit]")
        b.wait_for("!!window.pubsubdTest?.api.connection.connected()",
                   f"converse.js connected as {jid}")
        b.wait_for("window.pubsubdTest.api.waitUntil('rosterContactsFetched').then(() => true)",
                   "the roster fetched")

    def open_chat(self, jid: str) -> None:
        """Open the chat with ``jid``, and open it again if it does not show, as a person
        clicks the contact again: converse.js can lose an open that races the creation of
        the chat by the contact's first message (the contact then sits under "New
        messages")."""
        for attempt in range(4):
            self.browser.js(f"window.pubsubdTest.api.chats.open({json.dumps(jid)}, {{}}, true)"
                            ".then(() => true)")
            try:
                self.browser.wait_for(
                    f"!!document.querySelector({json.dumps(chat(jid) + ' textarea')})",
                    f"the chat with {jid} open", timeout=5.0)
                return
            except AssertionError:
                if attempt == 3:
                    raise

    def say(self, jid: str, text: str) -> None:
        textarea = chat(jid) + " textarea.chat-textarea"
        self.browser.call("fill", selector=textarea, text=text)
        self.browser.call("press", selector=textarea, key="Enter")

    def messages(self, jid: str) -> str:
        """A page expression: [{from, text}] of the messages shown in the chat with ``jid``."""
        selector = json.dumps(chat(jid) + " .chat-msg")
        return (f"[...document.querySelectorAll({selector})].map(m => ({{from: m.dataset.from,"
                " text: m.querySelector('.chat-msg__text')?.innerText ?? ''}))")

    def wait_for_message(self, jid: str, accept: Callable[[str], bool], what: str,
                         timeout: float = 20.0) -> list[dict[str, str]]:
        """Wait until the chat with ``jid`` shows a message from ``jid`` whose text passes
        ``accept``; return every message shown there."""
        def seen(messages: list[dict[str, str]]) -> bool:
            return any(m["from"].split("/")[0] == jid and accept(m["text"]) for m in messages)

        shown: list[dict[str, str]] = self.browser.wait_for(
            self.messages(jid), f"{what}, in the chat with {jid}", timeout, seen)
        return shown

    def renderings(self, jid: str, url: str) -> str:
        """A page expression: how the chat with ``jid`` shows ``url`` — ``links``: anchors to
        it (a link in a body, below it for an XEP-0066 URL, or in an audio player's caption),
        ``players``: audio players of it, ``texts``: its occurrences in the visible text,
        ``pending``: bodies or OOB blocks naming it whose rich text is not rendered yet (plain
        text until converse.js has turned its URLs into links or media)."""
        return f"""(() => {{
            const url = {json.dumps(url)};
            const chat = document.querySelector({json.dumps(chat(jid))});
            if (!chat) return {{links: 0, players: 0, texts: 0, pending: 0}};
            const rich = chat.querySelectorAll('converse-chat-message-body, converse-texture');
            return {{
                links: [...chat.querySelectorAll('.chat-msg a')].filter(a => a.href === url)
                    .length,
                players: [...chat.querySelectorAll('.chat-msg converse-audio-player')]
                    .filter(p => p.getAttribute('src') === url).length,
                texts: [...chat.querySelectorAll('.chat-msg')]
                    .map(m => m.innerText.split(url).length - 1).reduce((a, b) => a + b, 0),
                pending: [...rich].filter(el => el.textContent.includes(url)
                    && !el.querySelector('a, converse-audio-player')).length,
            }};
        }})()"""

    def wait_rendered(self, jid: str, url: str, what: str) -> dict[str, int]:
        """Wait until ``url`` is shown in the chat with ``jid`` and nothing naming it is still
        being rendered; return how it is shown (:meth:`renderings`)."""
        shown: dict[str, int] = self.browser.wait_for(
            self.renderings(jid, url), f"{what} rendered", accept=lambda r: (
                r["links"] >= 1 and r["pending"] == 0))
        return shown

    ROSTER = ("window.pubsubdTest.api.contacts.get().then(cs => cs.map(c => ({"
              "jid: c.get('jid'), name: c.get('nickname') ?? '', groups: c.get('groups') ?? [],"
              " subscription: c.get('subscription') ?? ''})))")

    def wait_for_contact(self, accept: Callable[[dict[str, Any]], bool], what: str,
                         timeout: float = 20.0) -> dict[str, Any]:
        """Wait until converse.js's roster holds a contact that passes ``accept``."""
        roster = self.browser.wait_for(self.ROSTER, f"{what} in converse.js's roster", timeout,
                                       lambda contacts: any(map(accept, contacts)))
        found: dict[str, Any] = next(c for c in roster if accept(c))
        return found


def chat(jid: str) -> str:
    return f'converse-chat[jid="{jid}"]'


# --- fixtures --------------------------------------------------------------------------------

class PageServer(ThreadingHTTPServer):
    """Serves the test page and its npm packages to the browser."""

    def __init__(self) -> None:
        handler = partial(QuietHandler, directory=str(CLIENT_DIR))
        super().__init__(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def url(self, websocket_port: int) -> str:
        ws = f"ws://127.0.0.1:{websocket_port}/xmpp-websocket"
        return f"http://127.0.0.1:{self.server_address[1]}/index.html?websocket_url={ws}"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def feeds() -> Iterator[ThreadedFeedServer]:
    with ThreadedFeedServer() as feeds:
        feeds.set("/feed.xml", feed_document("first-news"), content_type="application/rss+xml")
        yield feeds


@pytest.fixture
def ws_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """The server with plain c2s and a WebSocket listener (RFC 7395) on loopback."""
    proc = ServerProcess(tmp_path, extra={
        "listeners": [{"kind": "c2s", "address": "127.0.0.1", "port": 0},
                      {"kind": "websocket", "address": "127.0.0.1", "port": 0}],
        # Fast polls for the test, and the first poll of a feed as configured by default.
        "feeds": {**FEEDS_EXTRA, "first_poll": "last"},
    })
    proc.start()
    proc.ws_port = proc.port("websocket")  # type: ignore[attr-defined]
    proc.add_user(USER, PASSWORD)
    try:
        yield proc
    finally:
        if proc.alive():
            proc.kill()


@pytest.fixture
def converse(tmp_path: Path, ws_server: ServerProcess) -> Iterator[ConverseSession]:
    pages = PageServer()
    browser = Browser(tmp_path)
    session = ConverseSession(browser)
    try:
        try:
            session.log_in(pages.url(ws_server.ws_port),  # type: ignore[attr-defined]
                           f"{USER}@localhost", PASSWORD)
        except AssertionError:
            browser.screenshot(tmp_path / "conversejs-login.png")
            raise
        yield session
    finally:
        browser.close()
        pages.shutdown()
        pages.server_close()


# --- tests -----------------------------------------------------------------------------------

def test_conversejs_subscribes_by_chat_with_the_feed_service(
        converse: ConverseSession, feeds: ThreadedFeedServer, tmp_path: Path) -> None:
    """The command contact answers in converse.js, and its reply names the feed."""
    url = feeds.url("/feed.xml")
    converse.open_chat(COMMANDS)
    converse.say(COMMANDS, f"subscribe {url}")
    try:
        converse.wait_for_message(COMMANDS, lambda text: FEED_TITLE in text or url in text,
                                  "the reply to `subscribe` naming the feed")
    finally:
        converse.browser.screenshot(tmp_path / "conversejs-command-reply.png")


def test_conversejs_shows_feed_entries_from_the_feed_contact(
        converse: ConverseSession, feeds: ThreadedFeedServer, ws_server: ServerProcess,
        tmp_path: Path) -> None:
    """After `subscribe`, the feed is a contact in the roster and its entries are messages in
    the conversation with that contact, each shown once — and so is each entry's link and
    enclosure: converse.js shows an XEP-0066 URL a second time under a body that says more than
    that URL, so the link is in the body only and the enclosure a message of its own."""
    url = feeds.url("/feed.xml")
    converse.open_chat(COMMANDS)
    converse.say(COMMANDS, f"subscribe {url}")
    try:
        found = converse.wait_for_contact(
            lambda c: c["jid"].endswith("@pubsub.localhost") and c["jid"] != COMMANDS,
            "a feed contact <name>@pubsub.localhost (other than the command contact)")
        assert found["name"] == FEED_TITLE, found
        assert "Feeds" in found["groups"], found
        assert found["subscription"] == "both", found
        contact = found["jid"]

        # The feed's latest entry is sent as soon as the feed is followed.
        converse.open_chat(contact)
        converse.wait_for_message(contact, lambda text: "Entry first-news" in text,
                                  "the feed's latest entry")

        feeds.set("/feed.xml", feed_document("second-news", "first-news"),
                  content_type="application/rss+xml")
        ws_server.cli("feeds", "refresh", url)
        shown = converse.wait_for_message(contact, lambda text: "Entry second-news" in text,
                                          "the entry added to the feed after a refresh")
        texts = [m["text"] for m in shown]
        assert sum("Entry first-news" in t for t in texts) == 1, texts
        assert sum("Entry second-news" in t for t in texts) == 1, texts

        # Each link once: as a link in its entry's body, not again below it.
        for guid in ("first-news", "second-news"):
            link = converse.wait_rendered(contact, link_of(guid), f"the link of {guid}")
            assert link == {"links": 1, "players": 0, "texts": 1, "pending": 0}, (guid, link)
        # The enclosure once: one audio player (whose caption links to it), no second player
        # under a message, and not as text in the entry's body.
        enclosure = converse.wait_rendered(contact, ENCLOSURES["second-news"],
                                           "the enclosure of second-news")
        assert enclosure["links"] == 1 and enclosure["players"] == 1, enclosure
    finally:
        converse.browser.screenshot(tmp_path / "conversejs-feed-entry.png")
