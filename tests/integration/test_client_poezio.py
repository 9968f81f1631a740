"""Poezio, the terminal client from Debian, logs in at once, follows a feed by chat and shows its
entries.

Poezio runs in tmux as an ordinary user (it refuses root) with a throw-away HOME; the test types
at it as a person would and checks what it shows (``capture-pane``) and what it recorded (its
per-conversation logs). Each test keeps the screen (text and PNG) and Poezio's HOME in its tmp
dir, and the picture in ``$PUBSUBD_SCREENSHOT_DIR`` when set and the test passed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from client_feeds_support import (  # noqa: E402
    COMMAND_CONTACT,
    FIRST_ENTRY,
    NEXT_ENTRY,
    FeedWorld,
    feed_world,
    is_feed_contact,
)
from clients.account import client_account  # noqa: E402
from clients.peers import require_peer  # noqa: E402
from clients.poezio import Poezio, info_text, tab_text  # noqa: E402
from clients.tmux import compact  # noqa: E402

ENTRY_TIMEOUT = 20.0
Logs = dict[str, list[tuple[str, str]]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeedWorld]:
    require_peer("poezio", "tmux")
    with feed_world(tmp_path_factory.mktemp("poezio-world")) as world:
        yield world


@pytest.fixture
def start_poezio(world: FeedWorld, tmp_path: Path) -> Iterator[Callable[[str], Poezio]]:
    """Start Poezio for a new account ``user`` (password ``secret12``)."""
    started: list[Poezio] = []
    with client_account(tmp_path) as account:

        def start(user: str) -> Poezio:
            world.server.add_user(user, "secret12")
            client = Poezio(account, f"{user}@localhost", "secret12", world.server.c2s_port,
                            world.certificate)
            started.append(client)
            return client

        try:
            yield start
        finally:
            for client in started:
                client.term.save(tmp_path, "screen")
                client.close()


def _from(jid: str, text: str) -> Callable[[Logs], bool]:
    return lambda logs: any(text in body for _, body in logs.get(jid, []))


def _entry(title: str) -> Callable[[Logs], bool]:
    """A message logged in a feed contact's conversation whose first line is the entry's title
    (styling aside)."""
    return lambda logs: _contact_of(logs, title) is not None


def _contact_of(logs: Logs, title: str) -> str | None:
    return next((jid for jid, messages in logs.items() if is_feed_contact(jid)
                 for _, body in messages if title in body.split("\n", 1)[0]), None)


def test_poezio_first_login_succeeds(start_poezio: Callable[[str], Poezio]) -> None:
    """Issue 9: the server must not end Poezio's first attempt with "too many failed attempts"
    (it offered SASL mechanisms the connection cannot complete, and counted their failures)."""
    poezio = start_poezio("robin")
    screen = poezio.wait_logged_in()
    events = poezio.events()
    first_session = events[:events.index("session_start")]
    shown = info_text(screen)
    assert "disconnected" not in first_session and "Auto-reconnecting" not in shown, (
        f"Poezio's first login failed and it got in only by reconnecting. Its connection "
        f"events: {first_session}\nThe screen:\n{compact(screen)}")
    assert first_session.count("connected") == 1 and "stream_error" not in first_session


def test_poezio_subscribes_by_chat_and_shows_the_reply(world: FeedWorld,
                                                      start_poezio: Callable[[str], Poezio],
                                                      tmp_path: Path) -> None:
    """The driver's own check, with what works on every server version: log in over STARTTLS
    with the self-signed certificate trusted, chat ``subscribe URL`` with the command contact,
    see its answer."""
    poezio = start_poezio("sam")
    poezio.wait_logged_in()
    url = world.new_feed("reply")
    poezio.say(COMMAND_CONTACT, f"subscribe {url}")
    poezio.wait_for_log(_from(COMMAND_CONTACT, "Subscribed"), ENTRY_TIMEOUT,
                        what=f"the reply of {COMMAND_CONTACT}")
    screen = poezio.wait_shown(f"({url})", what="the reply, naming the feed, on screen")
    assert "Subscribed to" in screen and f"[{COMMAND_CONTACT}]" in screen, \
        "the reply is shown in the conversation"
    poezio.term.save(tmp_path, "poezio-subscribe-reply", publish=True)


def test_poezio_shows_feed_entries_from_the_feed_contact(world: FeedWorld,
                                                        start_poezio: Callable[[str], Poezio],
                                                        tmp_path: Path) -> None:
    """Issue 9: after ``subscribe``, the feed's own contact sends its latest entry as a chat
    message, shown in the conversation with that contact (not in the service's tab), and a new
    entry comes from the same contact when the feed changes.

    The entry that opens the tab is shown once. Poezio opens the tab by asking the archive for
    the conversation up to now, written to the whole second ("end" 01:18:13Z for an entry
    received at 01:18:13.3); when that answer lacks the entry, Poezio shows the entry itself
    and then reloads it from its log as history: twice on the screen, once in the log."""
    poezio = start_poezio("tess")
    poezio.wait_logged_in()
    url = world.new_feed("harbour")
    poezio.say(COMMAND_CONTACT, f"subscribe {url}")
    poezio.wait_for_log(_from(COMMAND_CONTACT, "Subscribed"), ENTRY_TIMEOUT,
                        what=f"the reply of {COMMAND_CONTACT}")

    logs = poezio.wait_for_log(
        _entry(FIRST_ENTRY), ENTRY_TIMEOUT,
        what=f"the latest entry {FIRST_ENTRY!r} from a feed contact (<name>@pubsub.localhost, "
             f"not {COMMAND_CONTACT})")
    contact = _contact_of(logs, FIRST_ENTRY)
    assert contact is not None
    poezio.show(contact)
    poezio.wait_shown(FIRST_ENTRY, what=f"{FIRST_ENTRY!r} in the conversation with {contact}")
    poezio.wait_history_loaded(contact)

    world.publish("harbour", [NEXT_ENTRY, FIRST_ENTRY])
    world.refresh("harbour")
    logs = poezio.wait_for_log(_entry(NEXT_ENTRY), ENTRY_TIMEOUT,
                               what=f"the new entry {NEXT_ENTRY!r} from a feed contact")
    assert _contact_of(logs, NEXT_ENTRY) == contact, "the new entry came from another contact"
    screen = poezio.wait_shown(NEXT_ENTRY,
                               what=f"{NEXT_ENTRY!r} in the conversation with {contact}")
    # What a person sees: each entry once in the conversation (issue 9 item 3), the first
    # one included, and once in Poezio's log.
    shown = tab_text(screen)
    for title in (FIRST_ENTRY, NEXT_ENTRY):
        assert shown.count("".join(title.split())) == 1, (
            f"{title!r} is not shown exactly once in the conversation with {contact}:\n"
            f"{compact(screen)}")
    received = [body for _, body in poezio.conversations()[contact]]
    assert sum(FIRST_ENTRY in body.split("\n", 1)[0] for body in received) == 1, received
    poezio.term.save(tmp_path, "poezio-feed-entry", publish=True)
