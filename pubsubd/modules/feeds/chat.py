"""Chatting with the pubsub service like with a person: ``subscribe <url>``, ``list``, ``help``...

Parsing is pure (:func:`parse_chat`), so every phrasing is testable without a server; the
:func:`answer` coroutine runs a parsed command against the feed manager and always returns a
friendly sentence, never a stack trace. Subscription options ride along as ``key:value`` words
and map onto the pubsub subscribe_options form (``only:`` → ``pubsubd#include_words`` ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pubsubd.modules.feeds.entry_urgency import describe as describe_urgency
from pubsubd.modules.feeds.refusal import FeedRefused

if TYPE_CHECKING:
    from pubsubd.modules.feeds.manager import FeedManager, SubscribeResult
    from pubsubd.pubsub import SubscriptionOptions

HELP = """I deliver web feeds (RSS and Atom) as messages. Say:
  subscribe <address> [options] — follow a feed (or a web page that has one)
  unsubscribe <address or number> — stop following it
  list — the feeds you follow, numbered
  pause [address or number] — hold deliveries (all feeds, or one)
  resume [address or number] — deliver again
  options <address or number> — how a feed is delivered to you
  urgent — entries reach your phone at once, even while its app is in the background
  batched — entries wait until you open the app again (the default)
  help — this text
Each feed you follow is a contact of its own (in the group “Feeds”): its entries come from
it, and you can answer it (pause, resume, only:word, unsubscribe, help).
Options for subscribe: only:word,word (entries mentioning one of these words),
not:word,word (skip entries with these words), digest:60 (one summary every 60 minutes),
catchup (receive what was missed while away), type:chat|headline|normal (default chat),
body:off."""

VERBS = {
    "subscribe": "subscribe", "sub": "subscribe", "follow": "subscribe", "add": "subscribe",
    "unsubscribe": "unsubscribe", "unsub": "unsubscribe", "unfollow": "unsubscribe",
    "remove": "unsubscribe", "list": "list", "ls": "list", "feeds": "list", "pause": "pause",
    "resume": "resume", "help": "help", "?": "help", "options": "options",
    "settings": "options", "urgent": "urgent", "batched": "batched", "batch": "batched",
}
MESSAGE_TYPES = ("headline", "chat", "normal")
_OFF = ("off", "no", "0", "false")


class ChatError(ValueError):
    """The message could not be understood; the text says how to say it."""


@dataclass(frozen=True, slots=True)
class ChatCommand:
    verb: str
    target: str = ""
    options: dict[str, list[str]] = field(default_factory=dict)


def parse_chat(text: str) -> ChatCommand:
    """Read one chat message as a command (case-insensitive verb, options after the target)."""
    words = text.strip().split()
    if not words:
        raise ChatError("Say “help” to see what I can do.")
    verb = VERBS.get(words[0].lower().rstrip(":"))
    if verb is None:
        raise ChatError(f"I do not know “{words[0]}”. Say “help” to see what I can do.")
    rest = words[1:]
    target = rest[0] if rest and not _is_option(rest[0]) else ""
    options_words = rest[1:] if target else rest
    if verb == "subscribe":
        if not target:
            raise ChatError("Which feed? Say “subscribe” followed by its address.")
        return ChatCommand(verb, target, parse_options(options_words))
    if options_words:
        raise ChatError(f"“{verb}” takes no options; say “help” for the list.")
    if verb in ("unsubscribe", "options") and not target:
        raise ChatError("Which feed? Say “unsubscribe” followed by its address or its number "
                        "in “list”.")
    if verb in ("list", "help", "urgent", "batched") and target:
        raise ChatError(f"“{verb}” needs nothing after it.")
    return ChatCommand(verb, target)


OPTION_KEYS = frozenset({"only", "include", "not", "except", "exclude", "digest", "catchup",
                         "catch-up", "type", "body"})


def _is_option(word: str) -> bool:
    return word.partition(":")[0].lower() in OPTION_KEYS


def parse_options(words: Sequence[str]) -> dict[str, list[str]]:
    """``only:a,b not:c digest:60 catchup type:chat body:off`` → subscribe_options fields."""
    form: dict[str, list[str]] = {}
    for word in words:
        key, _, value = word.partition(":")
        key, value = key.lower(), value.strip()
        terms = [t for t in value.replace(";", ",").split(",") if t]
        match key:
            case "only" | "include":
                if not terms:
                    raise ChatError("only: needs words, like only:xmpp,jabber")
                form["pubsubd#include_words"] = terms
            case "not" | "except" | "exclude":
                if not terms:
                    raise ChatError("not: needs words, like not:sport,weather")
                form["pubsubd#exclude_words"] = terms
            case "digest":
                if value.lower() in _OFF:
                    form["pubsub#digest"] = ["0"]
                    continue
                if not value.isdigit() or int(value) == 0:
                    raise ChatError("digest: takes minutes, like digest:60 (or digest:off)")
                form["pubsub#digest"] = ["1"]
                form["pubsub#digest_frequency"] = [str(int(value) * 60_000)]  # milliseconds
            case "catchup" | "catch-up":
                form["pubsubd#catch_up"] = ["0" if value.lower() in _OFF else "1"]
            case "type":
                if value.lower() not in MESSAGE_TYPES:
                    raise ChatError("type: is one of " + ", ".join(MESSAGE_TYPES))
                form["pubsubd#message_type"] = [value.lower()]
            case "body":
                form["pubsub#include_body"] = ["0" if value.lower() in _OFF else "1"]
            case _:
                raise ChatError(f"I do not know the option “{word}”; say “help” for the list.")
    return form


def describe_options(options: Mapping[str, Sequence[str]]) -> str:
    """The options of a form, in words (for confirmations)."""
    parts = []
    if options.get("pubsubd#include_words"):
        parts.append("only entries mentioning " + ", ".join(options["pubsubd#include_words"]))
    if options.get("pubsubd#exclude_words"):
        parts.append("skipping " + ", ".join(options["pubsubd#exclude_words"]))
    if list(options.get("pubsub#digest", [])) == ["1"]:
        minutes = int(options.get("pubsub#digest_frequency", ["86400000"])[0]) // 60_000
        parts.append(f"as a digest every {minutes} minutes")
    if list(options.get("pubsubd#catch_up", [])) == ["1"]:
        parts.append("with catch-up after absences")
    if options.get("pubsubd#message_type"):
        parts.append(f"as {options['pubsubd#message_type'][0]} messages")
    return "; ".join(parts)


async def answer(manager: FeedManager, user: str, text: str) -> str:
    """The reply to one chat message from ``user`` (a bare JID)."""
    try:
        command = parse_chat(text)
        match command.verb:
            case "help":
                return HELP
            case "subscribe":
                return await _subscribe(manager, user, command)
            case "unsubscribe":
                node = await _pick(manager, user, command.target)
                await manager.unsubscribe(user, node)
                return f"Unsubscribed from {node}."
            case "list":
                return await _list(manager, user)
            case "urgent" | "batched":
                if manager.entry_urgency is None:
                    return "Entries are delivered as they come; there is nothing to choose here."
                await manager.entry_urgency.set(user, command.verb)
                return describe_urgency(command.verb)
            case "options":
                node = await _pick(manager, user, command.target)
                sub = await manager.subscription_of(user, node)
                return f"{node}: " + (options_in_words(sub.options) if sub else "not followed.")
            case _:
                deliver = command.verb == "resume"
                chosen = await _pick(manager, user, command.target) if command.target else None
                count = await manager.set_delivery(user, deliver, chosen)
                if not count:
                    return "You follow no feeds yet; say “subscribe <address>”."
                what = chosen or f"all {count} of your feeds"
                return (f"Deliveries resumed for {what}." if deliver
                        else f"Deliveries paused for {what}; say “resume” to get them again.")
    except ChatError as error:
        return str(error)
    except FeedRefused as refused:
        return refused.message


async def _subscribe(manager: FeedManager, user: str, command: ChatCommand) -> str:
    # Someone who subscribes in a chat reads entries in that chat: chat messages show in every
    # client (some do not display headlines) and wait in offline storage while they are away.
    options = {"pubsubd#message_type": ["chat"], **command.options}
    result = await manager.subscribe(user, command.target, options)
    return subscribed_text(result, describe_options(command.options))


def subscribed_text(result: SubscribeResult, described: str = "") -> str:
    """The confirmation of a subscription: what, from which contact, next check when."""
    name = f"“{result.title}” ({result.node})" if result.title else result.node
    lines = [result.note] if result.note else []
    if result.already:
        lines.append(f"You already follow {name}; options updated"
                     + (f": {described}." if described else "."))
    else:
        lines.append(f"Subscribed to {name}" + (f", {described}" if described else "") + ".")
        if result.contact:
            lines.append(f"Its entries come from the contact {result.contact} (added to your "
                         "contacts); answer it with “help” to see what you can say there.")
        else:
            lines.append("New entries will arrive as messages.")
    if result.next_check:
        lines.append(f"Next check of the feed: {result.next_check}.")
    return "\n".join(lines)


def options_in_words(options: SubscriptionOptions) -> str:
    """A subscription's options, as the per-feed options view says them."""
    parts = ["delivering" if options.deliver else "paused (say “resume”)"]
    kind = options.message_type.value if options.message_type is not None else "headline"
    parts.append(f"as {kind} messages")
    if options.include_words:
        parts.append("only entries mentioning " + ", ".join(options.include_words))
    if options.exclude_words:
        parts.append("skipping " + ", ".join(options.exclude_words))
    if options.digest:
        parts.append(f"as a digest every {options.digest_frequency // 60_000} minutes")
    if options.catch_up:
        parts.append("with catch-up after absences")
    return "; ".join(parts) + "."


FEED_HELP = """I am one feed; its new entries arrive here. Say:
  pause — hold its entries;  resume — deliver them again
  only:word,word — only entries mentioning one of these words (only:off for all)
  not:word,word — skip entries with these words (not:off to stop skipping)
  options — how this feed is delivered to you
  unsubscribe — stop following it (removing me from your contacts does the same)
  subscribe — follow it (again)
  help — this text"""


async def answer_about_feed(manager: FeedManager, user: str, node: str, text: str) -> str:
    """The reply of a feed's contact to ``user``: the commands act on that feed only."""
    words = text.strip().split()
    verb = words[0].lower().rstrip(":") if words else ""
    try:
        if verb in ("help", "?", ""):
            return FEED_HELP
        if VERBS.get(verb) == "subscribe":
            return subscribed_text(await manager.subscribe(user, node))
        sub = await manager.subscription_of(user, node)
        if sub is None:
            return "You do not follow this feed; say “subscribe” to follow it."
        match VERBS.get(verb, verb):
            case "unsubscribe":
                await manager.unsubscribe(user, node)
                return f"Unsubscribed from {node}; you will get no more entries from me."
            case "pause" | "resume":
                deliver = VERBS[verb] == "resume"
                await manager.set_delivery(user, deliver, node)
                return ("Deliveries resumed." if deliver
                        else "Deliveries paused; say “resume” to get entries again.")
            case "options":
                return options_in_words(sub.options)
        form = _feed_filters(words)
        await manager.set_options(user, node, form)
        fresh = await manager.subscription_of(user, node)
        return "Options updated: " + (options_in_words(fresh.options) if fresh else "")
    except ChatError as error:
        return str(error)
    except FeedRefused as refused:
        return refused.message


def _feed_filters(words: Sequence[str]) -> dict[str, list[str]]:
    """``only:a,b`` / ``not:c`` (``off`` clears them) and the other subscribe options."""
    form: dict[str, list[str]] = {}
    rest = []
    for word in words:
        key, _, value = word.partition(":")
        if key.lower() in ("only", "include") and value.lower() in _OFF:
            form["pubsubd#include_words"] = []
        elif key.lower() in ("not", "except", "exclude") and value.lower() in _OFF:
            form["pubsubd#exclude_words"] = []
        elif _is_option(word):
            rest.append(word)
        else:
            raise ChatError(f"I do not know “{word}”. Say “help” to see what I can do.")
    form.update(parse_options(rest))
    return form


async def _list(manager: FeedManager, user: str) -> str:
    feeds = await manager.user_feeds(user)
    if not feeds:
        return "You follow no feeds yet; say “subscribe <address>”."
    lines = ["Your feeds:"]
    for number, feed in enumerate(feeds, start=1):
        flags = []
        if not feed.subscription.options.deliver:
            flags.append("paused")
        if feed.state is not None and feed.state.last_error:
            flags.append(f"error: {feed.state.last_error}")
        label = f"{feed.title} — {feed.node}" if feed.title else feed.node
        contact = manager.contacts.jid_of(feed.node) if manager.contacts is not None else None
        if contact:
            flags.insert(0, f"from {contact}")
        lines.append(f"{number}. {label}" + (f" ({'; '.join(flags)})" if flags else ""))
    return "\n".join(lines)


async def _pick(manager: FeedManager, user: str, target: str) -> str:
    """The node a user means by a number of ``list`` or an address."""
    feeds = await manager.user_feeds(user)
    if target.isdigit():
        number = int(target)
        if not 1 <= number <= len(feeds):
            raise ChatError(f"There is no feed number {number}; say “list” to see yours.")
        return feeds[number - 1].node
    for feed in feeds:
        if target in (feed.node, feed.url) or target.rstrip("/") == feed.node.rstrip("/"):
            return feed.node
    raise ChatError(f"You do not follow {target}; say “list” to see your feeds.")
