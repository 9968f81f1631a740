"""Profanity, the terminal client from Debian, follows a feed by chat and shows its entries.

Profanity runs in tmux with a throw-away HOME; the test types at its prompt as a person would
and checks what it shows (``capture-pane``) and what it recorded (its chat log database). Each
test keeps the screen (text and PNG) in its tmp dir, and in ``$PUBSUBD_SCREENSHOT_DIR`` when
set and the test passed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from client_feeds_support import (  # noqa: E402
    COMMAND_CONTACT,
    FEED_TITLE,
    FIRST_ENTRY,
    NEXT_ENTRY,
    FeedWorld,
    feed_world,
    is_feed_contact,
)
from clients.peers import require_peer  # noqa: E402
from clients.profanity import Logged, Profanity  # noqa: E402

ENTRY_TIMEOUT = 20.0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeedWorld]:
    require_peer("profanity", "tmux")
    with feed_world(tmp_path_factory.mktemp("profanity-world")) as world:
        yield world


@pytest.fixture
def profanity(tmp_path: Path) -> Iterator[Profanity]:
    client = Profanity(tmp_path / "home")
    try:
        yield client
    finally:
        client.term.save(tmp_path, "screen")
        client.close()


def _logged_in(world: FeedWorld, client: Profanity, user: str) -> None:
    world.server.add_user(user, "secret12")
    client.login(f"{user}@localhost", "secret12", world.server.c2s_port)


def _from(sender: str, text: str) -> Callable[[list[Logged]], bool]:
    return lambda log: any(m.sender == sender and text in m.text for m in log)


def _entry(title: str) -> Callable[[list[Logged]], bool]:
    """A message from a feed contact whose first line is the entry's title (styling aside)."""
    return lambda log: any(is_feed_contact(m.sender) and _headline(m.text, title) for m in log)


def _headline(text: str, title: str) -> bool:
    return title in text.split("\n", 1)[0]


def test_profanity_subscribes_by_chat_and_shows_the_reply(world: FeedWorld,
                                                        profanity: Profanity,
                                                        tmp_path: Path) -> None:
    """The driver's own check, with what works on every server version: log in over STARTTLS,
    chat ``subscribe URL`` with the command contact, see its answer."""
    _logged_in(world, profanity, "pat")
    url = world.new_feed("reply")
    profanity.say(COMMAND_CONTACT, f"subscribe {url}")
    profanity.wait_for_log(_from(COMMAND_CONTACT, "Subscribed"), ENTRY_TIMEOUT,
                           what=f"the reply of {COMMAND_CONTACT}")
    screen = profanity.term.wait_for("Subscribed to", what="the reply on screen")
    assert url in screen
    profanity.term.save(tmp_path, "profanity-subscribe-reply", publish=True)


def test_profanity_shows_feed_entries_from_the_feed_contact(world: FeedWorld,
                                                            profanity: Profanity,
                                                            tmp_path: Path) -> None:
    """Issue 9: after ``subscribe``, the feed's own contact sends its latest entry as a chat
    message Profanity shows (it does not show messages carrying a pubsub event), and a new
    entry comes from the same contact when the feed changes."""
    _logged_in(world, profanity, "quinn")
    url = world.new_feed("harbour")
    profanity.say(COMMAND_CONTACT, f"subscribe {url}")
    profanity.wait_for_log(_from(COMMAND_CONTACT, "Subscribed"), ENTRY_TIMEOUT,
                           what=f"the reply of {COMMAND_CONTACT}")

    log = profanity.wait_for_log(
        _entry(FIRST_ENTRY), ENTRY_TIMEOUT,
        what=f"the latest entry {FIRST_ENTRY!r} from a feed contact (<name>@pubsub.localhost, "
             f"not {COMMAND_CONTACT})")
    contact = _sender_of(log, FIRST_ENTRY)
    profanity.show(contact, FEED_TITLE)  # the contact is named after the feed
    profanity.term.wait_for(FIRST_ENTRY, what=f"{FIRST_ENTRY!r} in the chat with {contact}")

    world.publish("harbour", [NEXT_ENTRY, FIRST_ENTRY])
    world.refresh("harbour")
    log = profanity.wait_for_log(_entry(NEXT_ENTRY), ENTRY_TIMEOUT,
                                 what=f"the new entry {NEXT_ENTRY!r} from a feed contact")
    assert _sender_of(log, NEXT_ENTRY) == contact, "the new entry came from another contact"
    screen = profanity.term.wait_for(NEXT_ENTRY, what=f"{NEXT_ENTRY!r} in the chat with {contact}")
    # Each entry exactly once (issue 9 item 3), on screen and in the record.
    assert screen.count(FIRST_ENTRY) == 1, f"the first entry is not shown once:\n{screen}"
    received = [m.text for m in profanity.chat_log() if m.sender == contact]
    assert [t for t in received if _headline(t, FIRST_ENTRY)] == received[:1], received
    profanity.term.save(tmp_path, "profanity-feed-entry", publish=True)


def _sender_of(log: list[Logged], title: str) -> str:
    return next(m.sender for m in log if is_feed_contact(m.sender) and _headline(m.text, title))
