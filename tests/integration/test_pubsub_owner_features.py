"""Advertised features an owner relies on, each exercised over XMPP: roster-group access,
default subscription options, subscription notifications, several modifications at once
(XEP-0060 §8.8.2.4, §8.9.2.4) and the get-pending ad-hoc command (§8.7)."""

from __future__ import annotations

import asyncio
from typing import Any

from harness import ServerProcess, connect, disconnect, run
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from .pubsub_helpers import (
    EVENT,
    OWNER,
    PUBSUB,
    PUBSUB_PLUGINS,
    form_fields,
    iq_error,
    message_queue,
    next_event,
    raw_iq,
    service_jid,
)

COMMANDS = "http://jabber.org/protocol/commands"
DATA = "jabber:x:data"


def create_xml(node: str, **config: str) -> str:
    fields = "".join(f"<field var='pubsub#{k}'><value>{v}</value></field>"
                     for k, v in config.items())
    return (f"<pubsub xmlns='{PUBSUB}'><create node='{node}'/><configure>"
            f"<x xmlns='{DATA}' type='submit'><field var='FORM_TYPE' type='hidden'><value>"
            f"{PUBSUB}#node_config</value></field>{fields}</x></configure></pubsub>")


def subscribe_xml(node: str, jid: str) -> str:
    return f"<pubsub xmlns='{PUBSUB}'><subscribe node='{node}' jid='{jid}'/></pubsub>"


async def clients(server: ServerProcess, *names: str) -> list[Any]:
    return [await connect(server, server.add_user(n), plugins=PUBSUB_PLUGINS) for n in names]


def form_queue(client: Any) -> asyncio.Queue[Any]:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    client.register_handler(Callback(f"forms {id(queue)}", MatchXPath(
        f"{{jabber:client}}message/{{{DATA}}}x"),
        lambda m: queue.put_nowait(m.xml.find(f"{{{DATA}}}x"))))
    return queue


def test_advertised_owner_features(shared_server: ServerProcess) -> None:
    async def scenario() -> None:
        owner, friend, stranger = await clients(shared_server, "own1", "friend1", "stranger1")
        svc = service_jid(shared_server)
        friend_jid, stranger_jid = friend.boundjid.bare, stranger.boundjid.bare
        info = await owner.plugin["xep_0030"].get_info(jid=svc)
        features = set(info["disco_info"]["features"])
        for name in ("access-roster", "retrieve-default-sub", "subscription-notifications",
                     "presence-notifications", "get-pending"):
            assert f"{PUBSUB}#{name}" in features, name

        # §6.4 retrieve-default-sub: the default subscription options form
        default = await raw_iq(friend, svc, "get", f"<pubsub xmlns='{PUBSUB}'><default/></pubsub>")
        fields = form_fields(default.find(f".//{{{PUBSUB}}}default"))
        assert fields["FORM_TYPE"] == f"{PUBSUB}#subscribe_options"
        assert fields["pubsub#deliver"] == "1"

        # §4.5 access-roster: only contacts in an allowed roster group may subscribe
        await raw_iq(owner, "", "set", f"<query xmlns='jabber:iq:roster'><item jid="
                     f"'{friend_jid}'><group>friends</group></item></query>")
        await raw_iq(owner, svc, "set", create_xml(
            "club", access_model="roster", roster_groups_allowed="friends", notify_sub="1"))
        assert await iq_error(stranger, svc, "set", subscribe_xml("club", stranger_jid)) == (
            "auth", "not-authorized", "not-in-roster-group")
        owner_events, friend_events = message_queue(owner), message_queue(friend)
        await raw_iq(friend, svc, "set", subscribe_xml("club", friend_jid))
        # subscription-notifications: notify_sub tells the owner (§12.8)...
        told = (await next_event(owner_events)).find(f".//{{{EVENT}}}subscription")
        assert (told.get("jid"), told.get("subscription")) == (friend_jid, "subscribed")

        # ...and an owner's change is told to the subscriber (§8.8.4). Several changes at
        # once: the valid one applies, the invalid one comes back unaltered (§8.8.2.4).
        try:
            await raw_iq(owner, svc, "set", f"<pubsub xmlns='{OWNER}'><subscriptions node='club'>"
                         f"<subscription jid='{friend_jid}' subscription='none'/>"
                         f"<subscription jid='{stranger_jid}' subscription='bogus'/>"
                         f"</subscriptions></pubsub>")
            raise AssertionError("a bogus entry was accepted")
        except IqError as exc:
            error = exc.iq.xml
        assert error.find("{jabber:client}error/{urn:ietf:params:xml:ns:xmpp-stanzas}"
                          "not-acceptable") is not None
        refused = [(s.get("jid"), s.get("subscription"))
                   for s in error.iter(f"{{{OWNER}}}subscription")]
        assert refused == [(stranger_jid, "none")]
        gone = (await next_event(friend_events)).find(f".//{{{EVENT}}}subscription")
        assert (gone.get("node"), gone.get("subscription")) == ("club", "none")
        subs = await raw_iq(owner, svc, "get",
                            f"<pubsub xmlns='{OWNER}'><subscriptions node='club'/></pubsub>")
        assert list(subs.iter(f"{{{OWNER}}}subscription")) == []

        # §8.9.2.4: the only owner cannot step down; the publisher entry still applies
        try:
            await raw_iq(owner, svc, "set", f"<pubsub xmlns='{OWNER}'><affiliations node='club'>"
                         f"<affiliation jid='{owner.boundjid.bare}' affiliation='none'/>"
                         f"<affiliation jid='{friend_jid}' affiliation='publisher'/>"
                         f"</affiliations></pubsub>")
            raise AssertionError("the last owner left")
        except IqError as exc:
            refused = [(a.get("jid"), a.get("affiliation"))
                       for a in exc.iq.xml.iter(f"{{{OWNER}}}affiliation")]
        assert refused == [(owner.boundjid.bare, "owner")]
        affs = await raw_iq(owner, svc, "get",
                            f"<pubsub xmlns='{OWNER}'><affiliations node='club'/></pubsub>")
        assert (friend_jid, "publisher") in {(a.get("jid"), a.get("affiliation"))
                                             for a in affs.iter(f"{{{OWNER}}}affiliation")}
        await disconnect(owner, friend, stranger)

    run(scenario())


def test_get_pending_command(shared_server: ServerProcess) -> None:
    async def scenario() -> None:
        owner, asker, other = await clients(shared_server, "own2", "asker2", "other2")
        svc = service_jid(shared_server)
        execute = (f"<command xmlns='{COMMANDS}' node='{PUBSUB}#get-pending' "
                   f"action='execute'/>")
        # §8.7.3.3: someone who owns no node may not ask
        assert (await iq_error(other, svc, "set", execute))[1] == "forbidden"
        await raw_iq(owner, svc, "set", create_xml("vip", access_model="authorize"))
        await raw_iq(owner, svc, "set", create_xml("calm", access_model="authorize"))
        done = await raw_iq(owner, svc, "set", execute)
        assert done.find(f"{{{COMMANDS}}}command").get("status") == "completed"  # none yet
        forms = form_queue(owner)
        await raw_iq(asker, svc, "set", subscribe_xml("vip", asker.boundjid.bare))
        await asyncio.wait_for(forms.get(), 5)  # the request form sent at subscription time

        # §8.7.2: a form listing the nodes with pending requests
        stage = (await raw_iq(owner, svc, "set", execute)).find(f"{{{COMMANDS}}}command")
        assert stage.get("status") == "executing"
        field = next(f for f in stage.iter(f"{{{DATA}}}field") if f.get("var") == "pubsub#node")
        assert [o.findtext(f"{{{DATA}}}value") for o in field.iter(f"{{{DATA}}}option")] == [
            "vip"]
        # §8.7.4: choosing the node completes the command and sends one approval form each
        submit = (f"<command xmlns='{COMMANDS}' node='{PUBSUB}#get-pending' "
                  f"sessionid='{stage.get('sessionid')}'><x xmlns='{DATA}' type='submit'>"
                  f"<field var='FORM_TYPE' type='hidden'><value>{PUBSUB}#subscribe_authorization"
                  f"</value></field><field var='pubsub#node'><value>vip</value></field></x>"
                  f"</command>")
        done = await raw_iq(owner, svc, "set", submit)
        assert done.find(f"{{{COMMANDS}}}command").get("status") == "completed"
        form = await asyncio.wait_for(forms.get(), 5)
        values = {f.get("var"): f.findtext(f"{{{DATA}}}value") for f in form}
        assert values["FORM_TYPE"] == f"{PUBSUB}#subscribe_authorization"
        assert (values["pubsub#node"], values["pubsub#subscriber_jid"]) == (
            "vip", asker.boundjid.bare)
        await disconnect(owner, asker, other)

    run(scenario())

