"""Gajim, the desktop Jabber client from Debian, follows a feed and shows its entries.

Gajim runs on a virtual X display (see ``tests/clients/gajim.py``); the test sends commands the
way a user does — the conversation's message input, then Enter — and checks what Gajim itself
stored as displayed (its message archive), keeping a screenshot of the conversation.

Gajim drops every message that carries a pubsub element, so feed entries must reach it as plain
chat messages from the feed's own contact (``<name>@pubsub.<domain>``): that is what the second
test checks. Without Gajim (Debian packages ``gajim xvfb xdotool imagemagick``) the tests skip,
or fail under ``PUBSUBD_REQUIRE_PEERS=1`` as ``make test`` sets it.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest  # noqa: E402
from clients.gajim import CHAT_MSG_RECV, ArchivedMessage, gajim_session, require_tools  # noqa: E402
from feeds_support import FEEDS_EXTRA, ThreadedFeedServer, rss  # noqa: E402
from harness import ServerProcess  # noqa: E402

COMMANDS = "feeds@pubsub.localhost"
SERVICE = "pubsub.localhost"
PASSWORD = "secret12"
# Subscribers hear of the newest entry already in the feed at once ("last", one of them).
FEEDS = {**FEEDS_EXTRA, "first_poll": "last", "first_poll_count": 1}


@pytest.fixture(autouse=True)
def _gajim_installed() -> None:
    require_tools()


def _start(tmp_path: Path) -> ServerProcess:
    server = ServerProcess(tmp_path, extra={"feeds": FEEDS})
    server.start()
    server.add_user("carol", PASSWORD)
    return server


def _account(server: ServerProcess) -> dict[str, object]:
    certificate = server.workdir / "var" / "tls" / "selfsigned.crt"
    return {"jid": "carol@localhost", "password": PASSWORD, "host": "127.0.0.1",
            "port": server.c2s_port, "certificate": certificate}


def _entry(message: ArchivedMessage, title: str) -> bool:
    """An entry titled ``title`` from a feed's contact (its body's first line names it)."""
    return (message.kind == CHAT_MSG_RECV and message.jid.endswith("@" + SERVICE)
            and message.jid != COMMANDS and title in message.message.split("\n")[0])


def _help_from(contact: str) -> Callable[[ArchivedMessage], bool]:
    return lambda m: m.kind == CHAT_MSG_RECV and m.jid == contact and "subscribe" in m.message


def test_gajim_logs_in_and_shows_the_feed_service_replies(tmp_path: Path) -> None:
    """The driver itself: Gajim logs in over STARTTLS with the pinned certificate, sends what
    is typed into a conversation and shows the replies of the command contact and of the bare
    service address."""
    server = _start(tmp_path)
    try:
        with gajim_session(tmp_path / "gajim", **_account(server),
                           open_chats=(COMMANDS, SERVICE)) as gajim:
            gajim.wait_connected()
            for contact in (COMMANDS, SERVICE):
                gajim.say(contact, "help")
                gajim.wait_for_message(_help_from(contact), 20, f"the reply of {contact} to 'help'")
            gajim.show_chat(COMMANDS)
            gajim.desktop.screenshot(tmp_path / "gajim" / "command-reply.png")
    finally:
        server.kill()


def test_gajim_shows_a_feed_entry_from_the_feed_contact(tmp_path: Path) -> None:
    """``subscribe URL`` to ``feeds@``: the feed's contact appears and its latest entry is shown
    in the conversation with it; a new entry follows when the feed changes."""
    with ThreadedFeedServer() as web:
        web.set("/gajim.xml", rss("Gajim Weekly", ["first-light"]),
                content_type="application/rss+xml")
        url = web.url("/gajim.xml")
        server = _start(tmp_path)
        try:
            with gajim_session(tmp_path / "gajim", **_account(server),
                               open_chats=(COMMANDS,)) as gajim:
                gajim.wait_connected()
                gajim.say(COMMANDS, f"subscribe {url}")
                gajim.wait_for_message(lambda m: m.kind == CHAT_MSG_RECV and m.jid == COMMANDS,
                                       20, f"a reply of {COMMANDS} to 'subscribe'")
                # rss() titles each entry "Entry <guid>"; the body starts with the title.
                entry = gajim.wait_for_message(
                    lambda m: _entry(m, "Entry first-light"), 30,
                    f"the feed's latest entry 'Entry first-light' from a feed contact "
                    f"(<name>@{SERVICE}, not {COMMANDS})")
                gajim.show_chat(entry.jid)
                gajim.desktop.screenshot(tmp_path / "gajim" / "feed-entry.png")

                web.set("/gajim.xml", rss("Gajim Weekly", ["second-wind", "first-light"]),
                        content_type="application/rss+xml")
                server.cli("feeds", "refresh", url)
                gajim.wait_for_message(
                    lambda m: m.jid == entry.jid and _entry(m, "Entry second-wind"), 30,
                    f"the new entry 'Entry second-wind' from {entry.jid}")
                gajim.show_chat(entry.jid)
                gajim.desktop.screenshot(tmp_path / "gajim" / "feed-entries.png")
                firsts = [m for m in gajim.archive() if _entry(m, "Entry first-light")]
                assert len(firsts) == 1, f"the first entry was shown {len(firsts)} times.\n" \
                                         f"{gajim.describe()}"
                published = os.environ.get("PUBSUBD_SCREENSHOT_DIR")  # make screenshots
                if published:
                    Path(published).mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(tmp_path / "gajim" / "feed-entries.png",
                                    Path(published) / "gajim-feed-entry.png")
        finally:
            server.kill()
