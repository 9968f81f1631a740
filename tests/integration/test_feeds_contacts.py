"""A feed is a contact: ``<short-name>@pubsub.localhost`` in the roster (group "Feeds"), entries
from it as plain chat messages (the link in the body only, each enclosure a message of its own
with its XEP-0066 URL, no pubsub event) that land in the archive, its health as presence, its
vCard, replies in its conversation, and removal unfollows.

Real server, real HTTP feed server, slixmpp clients; every wait is on an event (a message, a
roster push, an IQ answer) or on ``pubsubd feeds refresh``, which returns once a poll is done.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feeds_support import (  # noqa: E402
    ATOM,
    COMMANDS,
    DATA,
    EVENT,
    FEEDS_EXTRA,
    PUBSUB,
    Inbox,
    ThreadedFeedServer,
    chat,
    form_xml,
    iq,
    rss,
)
from harness import ServerProcess, connect, disconnect, run  # noqa: E402

SERVICE = "pubsub.localhost"
COMMAND_CONTACT = "feeds@pubsub.localhost"
NEWS = "daily-news@pubsub.localhost"
OTHER = "other-side@pubsub.localhost"
ROSTER = "jabber:iq:roster"
OOB = "jabber:x:oob"
SID = "urn:xmpp:sid:0"
MAM = "urn:xmpp:mam:2"
VCARD = "vcard-temp"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
C = "{jabber:client}"
RSS = "application/rss+xml"
MP3 = "http://example.org/n3.mp3"


class Pushes:
    """Roster pushes and presence a client receives."""

    def __init__(self, client: Any) -> None:
        from slixmpp.xmlstream.handler import Callback
        from slixmpp.xmlstream.matcher import MatchXPath

        self.items: list[ET.Element] = []
        self.presences: list[ET.Element] = []
        self._event = asyncio.Event()
        client.register_handler(Callback(
            "feeds-test pushes", MatchXPath(f"{C}iq/{{{ROSTER}}}query"), self._push))
        client.register_handler(Callback(
            "feeds-test presence", MatchXPath(f"{C}presence"), self._presence))

    def _push(self, stanza: Any) -> None:
        if stanza["type"] == "set":
            self.items += list(stanza.xml.iter(f"{{{ROSTER}}}item"))
            self._event.set()

    def _presence(self, stanza: Any) -> None:
        self.presences.append(stanza.xml)
        self._event.set()

    def item(self, jid: str) -> ET.Element | None:
        found = [i for i in self.items if i.get("jid") == jid]
        return found[-1] if found else None

    def subscription(self, jid: str) -> str | None:
        item = self.item(jid)
        return None if item is None else item.get("subscription")

    def presence_from(self, jid: str) -> ET.Element | None:
        found = [p for p in self.presences if p.get("from", "").split("/")[0] == jid]
        return found[-1] if found else None

    async def wait_for(self, predicate: Any, within: float = 15.0) -> None:
        try:
            async with asyncio.timeout(within):
                while not predicate():
                    self._event.clear()
                    await self._event.wait()
        except TimeoutError:
            raise AssertionError("timed out; roster pushes: "
                                 f"{[ET.tostring(i)[:300] for i in self.items]}") from None


# A 1×1 PNG: the feed's logo, which becomes its contact's avatar.
LOGO = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def with_logo(document: str, url: str) -> str:
    """An RSS document with an <image> (its logo)."""
    return document.replace("<description>d</description>",
                            f"<description>d</description><image><url>{url}</url>"
                            "<title>logo</title><link>http://example.org/</link></image>", 1)


def entries_from(inbox: Inbox, contact: str) -> list[ET.Element]:
    return [m for m in inbox.messages if m.get("from", "").split("/")[0] == contact
            and m.get("type") == "chat" and "Entry " in (m.findtext(f"{C}body") or "")]


def oob_messages(inbox: Inbox, contact: str) -> list[ET.Element]:
    return [m for m in inbox.messages if m.get("from", "").split("/")[0] == contact
            and m.find(f"{{{OOB}}}x") is not None]


def with_enclosure(document: str, guid: str, url: str) -> str:
    """The RSS ``document`` with an audio enclosure on the item ``guid``."""
    guid_element = f"<guid isPermaLink='false'>{guid}</guid>"
    return document.replace(guid_element, guid_element + f"<enclosure url='{url}' "
                            "type='audio/mpeg' length='1234'/>", 1)


def titles(messages: list[ET.Element]) -> list[str]:
    return [(m.findtext(f"{C}body") or "").splitlines()[0] for m in messages]


async def refresh(server: ServerProcess, url: str) -> None:
    # A poll already running (the period is a second here) delivers the same entries.
    await asyncio.to_thread(server.cli, "feeds", "refresh", url, "--json", check=False)


def test_feed_contact_roster_chat_entries_archive_presence_and_unfollow(tmp_path: Path) -> None:
    with ThreadedFeedServer() as web:
        web.set("/logo.png", LOGO, content_type="image/png")

        def news_doc(guids: list[str]) -> str:
            return with_logo(rss("Daily News", guids), web.url("/logo.png"))

        web.set("/news.xml", news_doc(["n1", "n2"]), content_type=RSS)
        web.set("/other.xml", rss("Other Side", ["o1"]), content_type="application/rss+xml")
        news, other = web.url("/news.xml"), web.url("/other.xml")
        server = ServerProcess(tmp_path, extra={"feeds": FEEDS_EXTRA})
        server.start()
        try:
            alice = server.add_user("alice")
            bob = server.add_user("bob")

            async def scenario() -> None:
                client = await connect(server, alice + "/desk", presence=False)
                inbox, pushes = Inbox(client), Pushes(client)
                await client.get_roster()  # an interested resource gets roster pushes
                client.send_presence()
                watcher = await connect(server, bob)
                bob_inbox = Inbox(watcher)
                # A plain XEP-0060 subscriber of the same feed, for contrast.
                await iq(watcher, SERVICE, "set",
                         f"<pubsub xmlns='{PUBSUB}'><subscribe node='{news}' jid='{bob}'/>"
                         "</pubsub>")

                # 1. Subscribing by chat with the command contact.
                reply = await chat(client, inbox, COMMAND_CONTACT, f"subscribe {news}")
                assert "Subscribed" in reply and NEWS in reply, reply
                assert "Next check of the feed:" in reply, reply
                # The feed's contact is pushed into the roster: name, group, both.
                await pushes.wait_for(lambda: pushes.item(NEWS) is not None)
                item = pushes.item(NEWS)
                assert item is not None and item.get("name") == "Daily News"
                assert item.get("subscription") == "both"
                assert [g.text for g in item.iter(f"{{{ROSTER}}}group")] == ["Feeds"]
                # ... and the command contact too, on first contact.
                await pushes.wait_for(lambda: pushes.item(COMMAND_CONTACT) is not None)
                # The latest entry at once, from the contact, as plain chat.
                await inbox.wait_for(lambda: len(entries_from(inbox, NEWS)) >= 1)
                first = entries_from(inbox, NEWS)[0]
                assert titles([first]) == ["*Entry n1*"], titles([first])
                assert first.find(f"{{{EVENT}}}event") is None, "no pubsub event in chat"
                assert first.find(f".//{{{ATOM}}}entry") is None
                body = first.findtext(f"{C}body") or ""
                assert "http://example.org/n1" in body and "About n1." in body, body
                # The link is in the body only: no XEP-0066 copy for clients to show again.
                assert first.find(f"{{{OOB}}}x") is None
                stanza_id = first.find(f"{{{SID}}}stanza-id")
                assert stanza_id is not None and stanza_id.get("by") == alice
                # Its health as presence.
                await pushes.wait_for(lambda: pushes.presence_from(NEWS) is not None)
                status = pushes.presence_from(NEWS)
                assert status is not None and status.get("type") in (None, "available")
                assert "checked" in (status.findtext(f"{C}status") or "")
                # ... and the feed's logo as its avatar (XEP-0153 hash of the vCard PHOTO).
                assert status.findtext("{vcard-temp:x:update}x/{vcard-temp:x:update}photo") == \
                    hashlib.sha1(LOGO).hexdigest()

                # 2. A new entry: chat for alice, a headline event with Atom for bob. Its
                # enclosure follows as a message of its own, the URL as body and as OOB.
                web.set("/news.xml", with_enclosure(news_doc(["n3", "n1", "n2"]), "n3", MP3),
                        content_type=RSS)
                await refresh(server, news)
                await inbox.wait_for(lambda: len(entries_from(inbox, NEWS)) >= 2)
                assert titles(entries_from(inbox, NEWS)) == ["*Entry n1*", "*Entry n3*"]
                await inbox.wait_for(lambda: bool(oob_messages(inbox, NEWS)))
                [enclosure] = oob_messages(inbox, NEWS)
                assert enclosure.findtext(f"{C}body") == MP3
                assert [u.text for u in enclosure.iter(f"{{{OOB}}}url")] == [MP3]
                from_news = [m for m in inbox.messages
                             if m.get("from", "").split("/")[0] == NEWS and m.get("type") == "chat"]
                assert from_news[from_news.index(enclosure) - 1] is entries_from(inbox, NEWS)[1]
                assert entries_from(inbox, NEWS)[1].find(f"{{{OOB}}}x") is None
                assert MP3 not in (entries_from(inbox, NEWS)[1].findtext(f"{C}body") or "")
                await bob_inbox.wait_for(lambda: bool(bob_inbox.item_notifications(news)))
                _, _, headline = bob_inbox.item_notifications(news)[-1]
                assert headline.get("type") == "headline" and headline.get("from") == SERVICE
                assert headline.find(f".//{{{ATOM}}}entry") is not None

                # 3. Replies in the contact's conversation act on that feed.
                assert "paused" in (await chat(client, inbox, NEWS, "pause")).lower()
                # The contact turns away while the follower's deliveries are paused.
                await pushes.wait_for(lambda: (pushes.presence_from(NEWS) is not None and
                                               pushes.presence_from(NEWS).findtext(f"{C}show")
                                               == "away"))
                web.set("/news.xml", news_doc(["n4", "n3", "n1", "n2"]), content_type=RSS)
                await refresh(server, news)
                assert "resumed" in (await chat(client, inbox, NEWS, "resume")).lower()
                answer = await chat(client, inbox, NEWS, "only:n5")
                assert "n5" in answer, answer
                web.set("/news.xml", news_doc(["n6", "n5", "n4", "n3", "n1", "n2"]),
                        content_type=RSS)
                await refresh(server, news)
                await inbox.wait_for(lambda: len(entries_from(inbox, NEWS)) >= 3)
                assert titles(entries_from(inbox, NEWS)) == [
                    "*Entry n1*", "*Entry n3*", "*Entry n5*"], "paused and filtered out"
                assert "unsubscribe" in await chat(client, inbox, NEWS, "help")

                # 4. The contact's vCard and disco identity.
                card = await iq(client, NEWS, "get", f"<vCard xmlns='{VCARD}'/>")
                assert card.findtext(f"{{{VCARD}}}vCard/{{{VCARD}}}FN") == "Daily News"
                assert card.findtext(f"{{{VCARD}}}vCard/{{{VCARD}}}URL") == "http://example.org/"
                photo = card.find(f"{{{VCARD}}}vCard/{{{VCARD}}}PHOTO")
                assert photo is not None and photo.findtext(f"{{{VCARD}}}TYPE") == "image/png"
                assert base64.b64decode(photo.findtext(f"{{{VCARD}}}BINVAL") or "") == LOGO
                info = await iq(client, NEWS, "get", f"<query xmlns='{DISCO_INFO}'/>")
                identity = info.find(f"{{{DISCO_INFO}}}query/{{{DISCO_INFO}}}identity")
                assert identity is not None and identity.get("category") == "client"

                # 5. A second device: the contact answers its probe, MAM holds the entries.
                phone = await connect(server, alice + "/phone", presence=False)
                phone_inbox, phone_pushes = Inbox(phone), Pushes(phone)
                phone.send_presence()  # initial presence: the server probes the contacts
                await phone_pushes.wait_for(lambda: phone_pushes.presence_from(NEWS) is not None)
                probe_answer = phone_pushes.presence_from(NEWS)
                assert probe_answer is not None
                assert "next" in (probe_answer.findtext(f"{C}status") or "")
                await phone_pushes.wait_for(
                    lambda: phone_pushes.presence_from(COMMAND_CONTACT) is not None)
                fin = await iq(phone, alice, "set",
                               f"<query xmlns='{MAM}' queryid='q1'>"
                               + form_xml("submit", {"FORM_TYPE": [MAM], "with": [NEWS]})
                               + "</query>")
                assert fin.find(f"{{{MAM}}}fin") is not None
                archived = [m for m in phone_inbox.messages
                            if m.find(f"{{{MAM}}}result") is not None]
                bodies = [r.findtext(f".//{C}message/{C}body") or "" for r in archived]
                assert [b.splitlines()[0] for b in bodies if "Entry" in b] == [
                    "*Entry n1*", "*Entry n3*", "*Entry n5*"], bodies
                await disconnect(phone)

                # 6. Ad-hoc subscribe delivers as chat too; "unsubscribe" in its chat unfollows.
                first_step = await iq(client, SERVICE, "set",
                                      f"<command xmlns='{COMMANDS}' node='feeds/subscribe' "
                                      "action='execute'/>")
                session = first_step.find(f"{{{COMMANDS}}}command")
                assert session is not None
                await iq(client, SERVICE, "set",
                         f"<command xmlns='{COMMANDS}' node='feeds/subscribe' "
                         f"sessionid='{session.get('sessionid')}' action='complete'>"
                         + form_xml("submit", {"url": [other]}) + "</command>")
                await inbox.wait_for(lambda: len(entries_from(inbox, OTHER)) >= 1)
                await pushes.wait_for(lambda: pushes.item(OTHER) is not None)

                # My feeds renders as fields: fixed lines and a list-multi to unfollow.
                listing = await iq(client, SERVICE, "set",
                                   f"<command xmlns='{COMMANDS}' node='feeds/list' "
                                   "action='execute'/>")
                fields = list(listing.iter(f"{{{DATA}}}field"))
                fixed = " ".join(f.findtext(f"{{{DATA}}}value") or "" for f in fields
                                 if f.get("type") == "fixed")
                assert "Daily News" in fixed and "Other Side" in fixed, fixed
                multi = [f for f in fields if f.get("type") == "list-multi"]
                assert multi and {o.findtext(f"{{{DATA}}}value")
                                  for o in multi[0].iter(f"{{{DATA}}}option")} == {news, other}

                answer = await chat(client, inbox, OTHER, "unsubscribe")
                assert "Unsubscribed" in answer, answer
                await pushes.wait_for(lambda: pushes.subscription(OTHER) == "remove")

                # Subscribing to a feed's contact (the roster way) follows the feed again.
                client.send_presence(pto=OTHER, ptype="subscribe")
                await inbox.wait_for(lambda: len(entries_from(inbox, OTHER)) >= 2)
                await pushes.wait_for(lambda: pushes.subscription(OTHER) == "both")
                # My feeds: ticking a feed in the list-multi unfollows it.
                listing = await iq(client, SERVICE, "set",
                                   f"<command xmlns='{COMMANDS}' node='feeds/list' "
                                   "action='execute'/>")
                step = listing.find(f"{{{COMMANDS}}}command")
                assert step is not None
                done = await iq(client, SERVICE, "set",
                                f"<command xmlns='{COMMANDS}' node='feeds/list' "
                                f"sessionid='{step.get('sessionid')}' action='complete'>"
                                + form_xml("submit", {"unfollow": [other]}) + "</command>")
                notes = [n.text or "" for n in done.iter(f"{{{COMMANDS}}}note")]
                assert notes and notes[0].startswith("Unfollowed 1 feed(s)"), notes
                await pushes.wait_for(lambda: pushes.subscription(OTHER) == "remove")

                # The per-feed options view (ad-hoc): shows the filter set by chat, changes it.
                start = await iq(client, SERVICE, "set",
                                 f"<command xmlns='{COMMANDS}' node='feeds/options' "
                                 "action='execute'/>")
                step = start.find(f"{{{COMMANDS}}}command")
                assert step is not None
                sid = step.get("sessionid")
                shown = await iq(client, SERVICE, "set",
                                 f"<command xmlns='{COMMANDS}' node='feeds/options' "
                                 f"sessionid='{sid}' action='next'>"
                                 + form_xml("submit", {"feed": [news]}) + "</command>")
                values = {f.get("var"): [v.text for v in f.findall(f"{{{DATA}}}value")]
                          for f in shown.iter(f"{{{DATA}}}field")}
                assert values["pubsubd#include_words"] == ["n5"], values
                assert values["pubsubd#message_type"] == ["chat"], values
                await iq(client, SERVICE, "set",
                         f"<command xmlns='{COMMANDS}' node='feeds/options' "
                         f"sessionid='{sid}' action='complete'>"
                         + form_xml("submit", {"pubsubd#include_words": [""],
                                               "pubsub#deliver": ["1"]}) + "</command>")
                assert "delivering; as chat messages." in await chat(
                    client, inbox, NEWS, "options")

                # 7. Removing the feed's contact from the roster unfollows the feed.
                await iq(client, None, "set",
                         f"<query xmlns='{ROSTER}'><item jid='{NEWS}' subscription='remove'/>"
                         "</query>")
                # The roster removal's unsubscribe reached the service before the result.
                listing_text = await chat(client, inbox, COMMAND_CONTACT, "list")
                assert "no feeds" in listing_text, listing_text
                await disconnect(client, watcher)

            run(scenario())
        finally:
            if server.alive():
                server.kill()


def test_entries_wait_offline_once_and_are_in_the_archive(tmp_path: Path) -> None:
    with ThreadedFeedServer() as web:
        web.set("/news.xml", rss("Daily News", ["n1"]), content_type=RSS)
        news = web.url("/news.xml")
        server = ServerProcess(tmp_path, extra={"feeds": FEEDS_EXTRA})
        server.start()
        try:
            alice = server.add_user("alice")

            async def subscribe_and_leave() -> None:
                client = await connect(server, alice)
                inbox = Inbox(client)
                assert "Subscribed" in await chat(client, inbox, COMMAND_CONTACT,
                                                  f"subscribe {news}")
                await inbox.wait_for(lambda: len(entries_from(inbox, NEWS)) == 1)
                await disconnect(client)

            run(subscribe_and_leave())
            # A new entry while alice has no resource: it waits in offline storage
            # (RFC 6121 §8.5.2.1.1 for a chat message to a bare JID).
            web.set("/news.xml", rss("Daily News", ["n2", "n1"]), content_type=RSS)
            server.cli("feeds", "refresh", news, "--json", check=False)

            async def come_back() -> None:
                client = await connect(server, alice + "/laptop", presence=False)
                inbox = Inbox(client)
                client.send_presence()
                await inbox.wait_for(lambda: len(entries_from(inbox, NEWS)) >= 1)
                # A later reply proves nothing else was queued before it.
                await chat(client, inbox, COMMAND_CONTACT, "list")
                entries = entries_from(inbox, NEWS)
                assert titles(entries) == ["*Entry n2*"], titles(entries)
                assert entries[0].find("{urn:xmpp:delay}delay") is not None, "from storage"
                await iq(client, alice, "set",
                         f"<query xmlns='{MAM}' queryid='q'>"
                         + form_xml("submit", {"FORM_TYPE": [MAM], "with": [NEWS]})
                         + "</query>")
                archived = [(r.findtext(f".//{C}message/{C}body") or "").splitlines()[0]
                            for m in inbox.messages for r in m.iter(f"{{{MAM}}}result")]
                assert archived == ["*Entry n1*", "*Entry n2*"], archived
                await disconnect(client)

            run(come_back())
        finally:
            if server.alive():
                server.kill()


SLOW_FEEDS = {**FEEDS_EXTRA, "default_interval": 3600.0, "min_interval": 3600.0,
              "max_interval": 3600.0}  # only ``feeds refresh`` polls


def test_each_poll_refreshes_the_contact_and_a_pubsub_unsubscribe_removes_it(
    tmp_path: Path,
) -> None:
    with ThreadedFeedServer() as web:
        web.set("/news.xml", rss("Daily News", ["n1"]), content_type=RSS)
        news = web.url("/news.xml")
        server = ServerProcess(tmp_path, extra={"feeds": SLOW_FEEDS})
        server.start()
        try:
            alice = server.add_user("alice")

            async def scenario() -> None:
                client = await connect(server, alice + "/desk", presence=False)
                inbox, pushes = Inbox(client), Pushes(client)
                await client.get_roster()
                client.send_presence()
                assert "Subscribed" in await chat(client, inbox, COMMAND_CONTACT,
                                                  f"subscribe {news}")
                await pushes.wait_for(lambda: pushes.subscription(NEWS) == "both")
                await pushes.wait_for(lambda: pushes.presence_from(NEWS) is not None)

                # A poll with nothing new still tells the follower when it was checked and
                # when it is checked next (no timer per user: the poll itself).
                def from_news() -> int:
                    return sum(1 for p in pushes.presences
                               if p.get("from", "").split("/")[0] == NEWS)

                before = from_news()
                await refresh(server, news)
                await pushes.wait_for(lambda: from_news() > before)
                status = pushes.presence_from(NEWS)
                assert status is not None
                text = status.findtext(f"{C}status") or ""
                assert text.startswith("checked just now, next in "), text
                assert " h " in text or text.endswith(" h"), text

                # A raw XEP-0060 unsubscribe ends the last subscription: the contact goes.
                await iq(client, SERVICE, "set",
                         f"<pubsub xmlns='{PUBSUB}'><unsubscribe node='{news}' jid='{alice}'/>"
                         "</pubsub>")
                await pushes.wait_for(lambda: pushes.subscription(NEWS) == "remove")
                await disconnect(client)

            run(scenario())
        finally:
            if server.alive():
                server.kill()
