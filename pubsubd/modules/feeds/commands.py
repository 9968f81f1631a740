"""XEP-0050 ad-hoc commands on the pubsub service JID, for clients with a command menu.

Subscribe, Unsubscribe, My feeds, Import OPML and Export OPML, each a short XEP-0004 form
exchange. The Subscribe form carries the subscription options under their pubsub
subscribe_options names, so a choice made here is the same subscription option a pubsub
client would set (XEP-0060 §6.3) and that chat sets with ``only:``, ``digest:``...
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pubsubd.modules.feeds.chat import subscribed_text
from pubsubd.modules.feeds.contacts import health
from pubsubd.modules.feeds.entry_urgency import BATCHED, CHOICES, URGENT, describe
from pubsubd.modules.feeds.refusal import FeedRefused
from pubsubd.modules.xep0050_commands import (
    Command,
    CommandRegistry,
    CommandSession,
    Done,
    Note,
    Stage,
)
from pubsubd.pubsub import PubSubError
from pubsubd.xml.forms import Field, Form, Option

if TYPE_CHECKING:
    from pubsubd.modules.feeds.manager import FeedManager, UserFeed

NODE_PREFIX = "feeds/"
SUBSCRIBE = NODE_PREFIX + "subscribe"
UNSUBSCRIBE = NODE_PREFIX + "unsubscribe"
MY_FEEDS = NODE_PREFIX + "list"
IMPORT = NODE_PREFIX + "import-opml"
EXPORT = NODE_PREFIX + "export-opml"
OPTIONS = NODE_PREFIX + "options"
DELIVERY = NODE_PREFIX + "delivery"

# The subscription options the Subscribe form offers: field var → how a value is passed on.
DIGEST_PERIODS = (("900000", "every 15 minutes"), ("3600000", "every hour"),
                  ("21600000", "every 6 hours"), ("86400000", "every day"))
OPTION_VARS = ("pubsubd#include_words", "pubsubd#exclude_words", "pubsub#digest",
               "pubsub#digest_frequency", "pubsubd#catch_up", "pubsubd#message_type",
               "pubsub#include_body")


def subscribe_form() -> Form:
    return Form(
        "form",
        title="Subscribe to a feed",
        instructions=["The address of a feed, or of a web page that advertises one."],
        fields=[
            Field("url", "text-single", "Feed or web page address", required=True),
            Field("pubsubd#include_words", "text-single",
                  "Only entries mentioning one of these words (space separated)"),
            Field("pubsubd#exclude_words", "text-single",
                  "Skip entries mentioning any of these words"),
            Field("pubsub#digest", "boolean", "Receive a digest instead of each entry",
                  values=["0"]),
            Field("pubsub#digest_frequency", "list-single", "Digest period",
                  values=["86400000"], options=[Option(v, label) for v, label in DIGEST_PERIODS]),
            Field("pubsubd#catch_up", "boolean", "Catch up on entries missed while away",
                  values=["0"]),
            # Chat, as on every person-facing way in: every client shows chat messages.
            Field("pubsubd#message_type", "list-single", "Message type",
                  values=["chat"],
                  options=[Option("headline", "Headline"), Option("chat", "Chat"),
                           Option("normal", "Normal")]),
            Field("pubsub#include_body", "boolean", "Include a readable body", values=["1"]),
        ],
    )


def options_from(form: Form) -> dict[str, list[str]]:
    """The subscribe_options fields of a submitted Subscribe form (blank ones left out)."""
    chosen: dict[str, list[str]] = {}
    for var in OPTION_VARS:
        values = [v for v in form.values(var) if v.strip()]
        if values:
            chosen[var] = values
    if chosen.get("pubsub#digest") not in (["1"], ["true"]):
        chosen.pop("pubsub#digest_frequency", None)
    return chosen


def _feed_line(feed: UserFeed, now: float) -> str:
    """One feed in words: title, address, delivery, health."""
    delivering = feed.subscription.options.deliver
    _, status = health(feed.state, now, delivering)
    title = f"{feed.title} — {feed.node}" if feed.title else feed.node
    return f"{title} ({'delivering' if delivering else 'paused'}; {status})"


def _error(message: str) -> Done:
    return Done([Note(message, "error")])


def _user(session: CommandSession) -> str:
    return str(session.requester.bare)


def build_commands(manager: FeedManager) -> list[Command]:
    async def subscribe_start(session: CommandSession, _: Form | None) -> Stage | Done:
        return Stage(subscribe_form(), final=True)

    async def subscribe_done(session: CommandSession, form: Form | None) -> Stage | Done:
        assert form is not None
        url = (form.value("url") or "").strip()
        if not url:
            return _error("Give the address of a feed.")
        try:
            result = await manager.subscribe(_user(session), url, options_from(form))
        except FeedRefused as refused:
            return _error(refused.message)
        return Done([Note(line) for line in subscribed_text(result).splitlines() if line])

    async def unsubscribe_start(session: CommandSession, _: Form | None) -> Stage | Done:
        feeds = await manager.user_feeds(_user(session))
        if not feeds:
            return Done([Note("You follow no feeds.")])
        field = Field("feeds", "list-multi", "Feeds to unsubscribe from", required=True,
                      options=[Option(f.node, f.title or f.node) for f in feeds])
        return Stage(Form("form", title="Unsubscribe", fields=[field]), final=True)

    async def unsubscribe_done(session: CommandSession, form: Form | None) -> Stage | Done:
        assert form is not None
        removed = [node for node in form.values("feeds")
                   if await manager.unsubscribe(_user(session), node)]
        return Done([Note(f"Unsubscribed from {len(removed)} feed(s).")])

    async def my_feeds(session: CommandSession, _: Form | None) -> Stage | Done:
        # Fixed lines and a list-multi, which every client with commands renders (Profanity
        # and Poezio show a form of only <reported> items as an empty form).
        feeds = await manager.user_feeds(_user(session))
        if not feeds:
            return Done([Note("You follow no feeds yet.")])
        now = time.time()
        fields = [Field(None, "fixed", values=[f"You follow {len(feeds)} feed(s):"])]
        for number, feed in enumerate(feeds, start=1):
            fields.append(Field(None, "fixed", values=[f"{number}. {_feed_line(feed, now)}"]))
        fields.append(Field("unfollow", "list-multi", "Tick feeds to unfollow",
                            options=[Option(f.node, f.title or f.node) for f in feeds]))
        return Stage(Form("form", title="My feeds", fields=fields), final=True)

    async def my_feeds_done(session: CommandSession, form: Form | None) -> Stage | Done:
        assert form is not None
        removed = [node for node in form.values("unfollow")
                   if await manager.unsubscribe(_user(session), node)]
        if not removed:
            return Done([Note("No change.")])
        return Done([Note(f"Unfollowed {len(removed)} feed(s): {', '.join(removed)}.")])

    async def options_start(session: CommandSession, _: Form | None) -> Stage | Done:
        feeds = await manager.user_feeds(_user(session))
        if not feeds:
            return Done([Note("You follow no feeds.")])
        field = Field("feed", "list-single", "Feed", required=True, values=[feeds[0].node],
                      options=[Option(f.node, f.title or f.node) for f in feeds])
        return Stage(Form("form", title="Feed options", fields=[field]), final=False)

    async def options_form(session: CommandSession, form: Form | None) -> Stage | Done:
        assert form is not None
        node = form.value("feed") or ""
        sub = await manager.subscription_of(_user(session), node)
        if sub is None:
            return _error(f"You do not follow {node}.")
        session.data["feed"] = node
        o = sub.options
        kind = o.message_type.value if o.message_type is not None else "headline"
        fields = [
            Field(None, "fixed", values=[node]),
            Field("pubsub#deliver", "boolean", "Deliver entries",
                  values=["1" if o.deliver else "0"]),
            Field("pubsubd#message_type", "list-single", "Message type", values=[kind],
                  options=[Option("chat", "Chat"), Option("headline", "Headline"),
                           Option("normal", "Normal")]),
            Field("pubsubd#include_words", "text-single",
                  "Only entries mentioning one of these words", values=[" ".join(o.include_words)]),
            Field("pubsubd#exclude_words", "text-single",
                  "Skip entries mentioning any of these words", values=[" ".join(o.exclude_words)]),
        ]
        return Stage(Form("form", title="Feed options", fields=fields), final=True)

    async def options_done(session: CommandSession, form: Form | None) -> Stage | Done:
        assert form is not None
        node = str(session.data.get("feed", ""))
        chosen = {var: [w for v in form.values(var) for w in v.split()]
                  for var in ("pubsubd#include_words", "pubsubd#exclude_words")}
        for var in ("pubsub#deliver", "pubsubd#message_type"):
            if form.values(var):
                chosen[var] = form.values(var)
        try:
            if not await manager.set_options(_user(session), node, chosen):
                return _error(f"You do not follow {node}.")
        except PubSubError as error:
            return _error(f"Those options were refused: {error.text or error.condition}.")
        return Done([Note(f"Options of {node} updated.")])

    async def import_start(session: CommandSession, _: Form | None) -> Stage | Done:
        field = Field("opml", "text-multi", "OPML document", required=True)
        return Stage(Form("form", title="Import OPML",
                          instructions=["Paste an OPML subscription list."], fields=[field]),
                     final=True)

    async def import_done(session: CommandSession, form: Form | None) -> Stage | Done:
        assert form is not None
        try:
            report = await manager.import_opml(_user(session), "\n".join(form.values("opml")))
        except FeedRefused as refused:
            return _error(refused.message)
        notes = [Note(f"Subscribed to {len(report.added)} feed(s).")]
        notes += [Note(f"{url}: {reason}", "warn") for url, reason in report.failed]
        return Done(notes)

    async def export(session: CommandSession, _: Form | None) -> Stage | Done:
        document = await manager.export_opml(_user(session))
        result = Form("result", title="Export OPML",
                      fields=[Field("opml", "text-multi", "OPML document",
                                    values=document.splitlines())])
        return Done([Note("Your feeds as OPML.")], form=result)

    async def delivery_start(session: CommandSession, _: Form | None) -> Stage | Done:
        urgency = manager.entry_urgency
        if urgency is None:
            return Done([Note("Entries are delivered as they come; there is nothing to choose.")])
        current = await urgency.choice(_user(session))
        field = Field("entries", "list-single", "Chat entries while your app is in the background",
                      required=True, values=[current],
                      options=[Option(BATCHED, "Batched: they wait until I open it"),
                               Option(URGENT, "Urgent: each one at once")])
        return Stage(Form("form", title="Delivery on phones", fields=[field]), final=True)

    async def delivery_done(session: CommandSession, form: Form | None) -> Stage | Done:
        assert form is not None
        choice = form.value("entries") or ""
        if manager.entry_urgency is None or choice not in CHOICES:
            return _error(f"Choose {URGENT} or {BATCHED}.")
        await manager.entry_urgency.set(_user(session), choice)
        return Done([Note(describe(choice))])

    return [
        Command(SUBSCRIBE, "Subscribe to a feed", [subscribe_start, subscribe_done]),
        Command(UNSUBSCRIBE, "Unsubscribe from feeds", [unsubscribe_start, unsubscribe_done]),
        Command(MY_FEEDS, "My feeds", [my_feeds, my_feeds_done]),
        Command(OPTIONS, "Feed options", [options_start, options_form, options_done]),
        Command(IMPORT, "Import OPML", [import_start, import_done]),
        Command(EXPORT, "Export OPML", [export]),
        Command(DELIVERY, "Delivery on phones", [delivery_start, delivery_done]),
    ]


def register_commands(registry: CommandRegistry, manager: FeedManager,
                      allowed: Callable[..., bool] | None = None) -> None:
    """Offer the feed commands on ``registry`` (the pubsub service's)."""
    for command in build_commands(manager):
        if allowed is not None:
            command.allowed = allowed
        registry.add(command)
