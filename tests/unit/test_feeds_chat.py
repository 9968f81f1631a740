"""Chat commands to the feed service: parsing, options, and replies in words."""

from __future__ import annotations

import pytest

from pubsubd.modules.feeds.chat import (
    ChatCommand,
    ChatError,
    describe_options,
    parse_chat,
    parse_options,
)


def test_subscribe_with_every_option() -> None:
    command = parse_chat(
        "Subscribe https://example.org/feed.xml only:xmpp,Jabber not:sport digest:60 catchup "
        "type:chat body:off"
    )
    assert command.verb == "subscribe"
    assert command.target == "https://example.org/feed.xml"
    assert command.options == {
        "pubsubd#include_words": ["xmpp", "Jabber"],
        "pubsubd#exclude_words": ["sport"],
        "pubsub#digest": ["1"],
        "pubsub#digest_frequency": ["3600000"],  # XEP-0060 §16.4.2: milliseconds
        "pubsubd#catch_up": ["1"],
        "pubsubd#message_type": ["chat"],
        "pubsub#include_body": ["0"],
    }


@pytest.mark.parametrize(("text", "verb", "target"), [
    ("unsubscribe 2", "unsubscribe", "2"),
    ("unfollow https://example.org/f", "unsubscribe", "https://example.org/f"),
    ("LIST", "list", ""),
    ("pause", "pause", ""),
    ("resume 3", "resume", "3"),
    ("help", "help", ""),
    ("add example.org", "subscribe", "example.org"),
])
def test_verbs_and_synonyms(text: str, verb: str, target: str) -> None:
    command = parse_chat(text)
    assert (command.verb, command.target) == (verb, target)


@pytest.mark.parametrize(("text", "hint"), [
    ("", "help"),
    ("dance", "do not know"),
    ("subscribe", "Which feed"),
    ("subscribe only:x", "Which feed"),
    ("unsubscribe", "Which feed"),
    ("subscribe https://e.org/f digest:soon", "digest"),
    ("subscribe https://e.org/f type:smoke", "type:"),
    ("subscribe https://e.org/f colour:red", "option"),
    ("list everything", "nothing"),
])
def test_friendly_errors(text: str, hint: str) -> None:
    with pytest.raises(ChatError) as error:
        parse_chat(text)
    assert hint in str(error.value)


def test_digest_off_and_options_in_words() -> None:
    assert parse_options(["digest:off"]) == {"pubsub#digest": ["0"]}
    words = describe_options(parse_options(["only:xmpp", "digest:15", "catchup"]))
    assert words == ("only entries mentioning xmpp; as a digest every 15 minutes; "
                     "with catch-up after absences")


def test_options_verb_and_feed_chat_filters() -> None:
    from pubsubd.modules.feeds.chat import _feed_filters

    assert parse_chat("options 2") == ChatCommand("options", "2")
    with pytest.raises(ChatError):
        parse_chat("options")
    assert _feed_filters(["only:a,b"]) == {"pubsubd#include_words": ["a", "b"]}
    assert _feed_filters(["only:off", "not:off"]) == {"pubsubd#include_words": [],
                                                      "pubsubd#exclude_words": []}
    with pytest.raises(ChatError):
        _feed_filters(["hello"])
