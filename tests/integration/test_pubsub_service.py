"""The pubsub.<domain> service driven by real clients: XEP-0060 §5–§8 and their errors."""

from __future__ import annotations

from typing import Any

from harness import ServerProcess, connect, disconnect, run
from slixmpp import ET

from .pubsub_helpers import (
    EVENT,
    OWNER,
    PUBSUB,
    PUBSUB_PLUGINS,
    iq_error,
    item_ids,
    message_queue,
    next_event,
    no_event,
    node_meta,
    raw_iq,
    service_jid,
)

ATOM = "<entry xmlns='http://www.w3.org/2005/Atom'><title>{}</title></entry>"


def entry(title: str) -> ET.Element:
    return ET.fromstring(ATOM.format(title))


async def clients(server: ServerProcess, *names: str) -> list[Any]:
    return [await connect(server, server.add_user(n), plugins=PUBSUB_PLUGINS) for n in names]


def publish_xml(node: str, item_id: str, title: str, options: str = "") -> str:
    return (f"<pubsub xmlns='{PUBSUB}'><publish node='{node}'><item id='{item_id}'>"
            f"{ATOM.format(title)}</item></publish>{options}</pubsub>")


def config_form(form_type: str, **fields: str) -> str:
    body = "".join(f"<field var='pubsub#{k}'><value>{v}</value></field>" for k, v in fields.items())
    return (f"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
            f"<value>http://jabber.org/protocol/pubsub#{form_type}</value></field>{body}</x>")


def test_discovery_and_node_lifecycle(shared_server: ServerProcess) -> None:
    async def scenario() -> None:
        owner, reader = await clients(shared_server, "owner1", "reader1")
        svc = service_jid(shared_server)
        disco = owner.plugin["xep_0030"]
        items = await disco.get_items(jid=shared_server.domain)
        assert svc in {i[0] for i in items["disco_items"]["items"]}
        info = await disco.get_info(jid=svc)
        features = info["disco_info"]["features"]
        assert f"{PUBSUB}#create-nodes" in features and f"{PUBSUB}#collections" in features
        assert ("pubsub", "service") in {i[:2] for i in info["disco_info"]["identities"]}

        # §8.1.3 create and configure; §5.4 metadata
        create = (f"<pubsub xmlns='{PUBSUB}'><create node='life'/><configure>"
                  f"{config_form('node_config', title='Life news', max_items='5')}"
                  f"</configure></pubsub>")
        result = await raw_iq(owner, svc, "set", create)
        assert result.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}create").get("node") == "life"
        assert await iq_error(owner, svc, "set", create) == ("cancel", "conflict", None)
        meta = await node_meta(owner, svc, "life")
        assert meta["FORM_TYPE"] == "http://jabber.org/protocol/pubsub#meta-data"
        assert meta["pubsub#title"] == "Life news" and meta["pubsub#max_items"] == "5"
        listed = await disco.get_items(jid=svc)
        assert ("life" in {i[1] for i in listed["disco_items"]["items"]})

        # §8.1.1 instant node
        instant = await raw_iq(owner, svc, "set", f"<pubsub xmlns='{PUBSUB}'><create/></pubsub>")
        assert instant.find(f".//{{{PUBSUB}}}create").get("node")

        # §8.2 configure: get, submit, a bad field → not-acceptable, a non-owner → forbidden
        conf = await owner.plugin["xep_0060"].get_node_config(svc, "life")
        assert conf["pubsub_owner"]["configure"]["form"]["values"]["pubsub#title"] == "Life news"
        await raw_iq(owner, svc, "set", f"<pubsub xmlns='{OWNER}'><configure node='life'>"
                     f"{config_form('node_config', title='Renamed')}</configure></pubsub>")
        assert (await node_meta(owner, svc, "life"))["pubsub#title"] == "Renamed"
        bad = (f"<pubsub xmlns='{OWNER}'><configure node='life'>"
               f"{config_form('node_config', max_items='many')}</configure></pubsub>")
        assert (await iq_error(owner, svc, "set", bad))[1] == "not-acceptable"
        assert (await iq_error(reader, svc, "get", f"<pubsub xmlns='{OWNER}'><configure "
                                f"node='life'/></pubsub>"))[:2] == ("auth", "forbidden")
        # §8.3 default configuration
        default = await raw_iq(owner, svc, "get", f"<pubsub xmlns='{OWNER}'><default/></pubsub>")
        assert default.find(f".//{{{OWNER}}}default/{{jabber:x:data}}x") is not None

        # §8.4 delete with redirect: subscribers hear of it
        events = message_queue(reader)
        await reader.plugin["xep_0060"].subscribe(svc, "life")
        await raw_iq(owner, svc, "set", f"<pubsub xmlns='{OWNER}'><delete node='life'>"
                     f"<redirect uri='xmpp:{svc}?;node=elsewhere'/></delete></pubsub>")
        event = await next_event(events)
        deleted = event.find(f"{{{EVENT}}}event/{{{EVENT}}}delete")
        assert deleted.get("node") == "life"
        assert deleted.find(f"{{{EVENT}}}redirect").get("uri").endswith("node=elsewhere")
        assert (await iq_error(reader, svc, "get", f"<pubsub xmlns='{PUBSUB}'><items "
                               f"node='life'/></pubsub>"))[:2] == ("cancel", "item-not-found")
        await disconnect(owner, reader)

    run(scenario())


def test_publish_subscribe_retract_purge(shared_server: ServerProcess) -> None:
    async def scenario() -> None:
        owner, reader, stranger = await clients(shared_server, "owner2", "reader2", "stranger2")
        svc = service_jid(shared_server)
        ps = reader.plugin["xep_0060"]
        await owner.plugin["xep_0060"].create_node(svc, "feed2")
        events = message_queue(reader)
        sub = await ps.subscribe(svc, "feed2")
        assert sub["pubsub"]["subscription"]["subscription"] == "subscribed"

        # §7.1 publish with and without an id; the notification carries the payload
        await raw_iq(owner, svc, "set", publish_xml("feed2", "a", "First"))
        event = await next_event(events)
        assert item_ids(event) == ["a"]
        assert event.find(".//{http://www.w3.org/2005/Atom}title").text == "First"
        generated = await owner.plugin["xep_0060"].publish(svc, "feed2", payload=entry("Second"))
        new_id = generated["pubsub"]["publish"]["item"]["id"]
        assert new_id and item_ids(await next_event(events)) == [new_id]
        # an existing id replaces the item
        await raw_iq(owner, svc, "set", publish_xml("feed2", "a", "First, edited"))
        await next_event(events)

        # §6.5 retrieve: all, max_items, by id
        everything = await raw_iq(reader, svc, "get",
                                  f"<pubsub xmlns='{PUBSUB}'><items node='feed2'/></pubsub>")
        titles = [t.text for t in everything.iter("{http://www.w3.org/2005/Atom}title")]
        assert sorted(titles) == ["First, edited", "Second"]
        newest = await raw_iq(reader, svc, "get", f"<pubsub xmlns='{PUBSUB}'><items "
                              f"node='feed2' max_items='1'/></pubsub>")
        assert [i.get("id") for i in newest.iter(f"{{{PUBSUB}}}item")] == ["a"]
        one = await ps.get_item(svc, "feed2", new_id)
        assert one["pubsub"]["items"]["substanzas"][0]["id"] == new_id

        # §7.1.3.1 a non-publisher may not publish; §7.1.3.5 payload too big
        assert (await iq_error(stranger, svc, "set", publish_xml("feed2", "x", "no")))[:2] == (
            "auth", "forbidden")
        huge = publish_xml("feed2", "big", "x" * 70000)
        assert (await iq_error(owner, svc, "set", huge))[1:] == ("not-acceptable",
                                                                "payload-too-big")

        # §5.6 / §5.7 own subscriptions and affiliations
        subs = await raw_iq(reader, svc, "get",
                            f"<pubsub xmlns='{PUBSUB}'><subscriptions/></pubsub>")
        assert [s.get("node") for s in subs.iter(f"{{{PUBSUB}}}subscription")] == ["feed2"]
        affs = await raw_iq(owner, svc, "get", f"<pubsub xmlns='{PUBSUB}'><affiliations/></pubsub>")
        assert ("feed2", "owner") in {(a.get("node"), a.get("affiliation"))
                                      for a in affs.iter(f"{{{PUBSUB}}}affiliation")}

        # §7.2 retract with notify; §8.5 purge
        await owner.plugin["xep_0060"].retract(svc, "feed2", new_id, notify=True)
        event = await next_event(events)
        assert event.find(f".//{{{EVENT}}}retract").get("id") == new_id
        assert (await iq_error(owner, svc, "set", f"<pubsub xmlns='{PUBSUB}'><retract "
                               f"node='feed2'><item id='gone'/></retract></pubsub>"))[1] == (
            "item-not-found")
        await owner.plugin["xep_0060"].purge(svc, "feed2")
        assert (await next_event(events)).find(f".//{{{EVENT}}}purge").get("node") == "feed2"

        # §6.2 unsubscribe; again → unexpected-request + not-subscribed
        await ps.unsubscribe(svc, "feed2")
        await raw_iq(owner, svc, "set", publish_xml("feed2", "after", "After"))
        await no_event(events, reader)
        assert await iq_error(reader, svc, "set", f"<pubsub xmlns='{PUBSUB}'><unsubscribe "
                              f"node='feed2' jid='{reader.boundjid.bare}'/></pubsub>") == (
            "cancel", "unexpected-request", "not-subscribed")
        # §6.1.3.1 subscribing someone else → bad-request + invalid-jid
        assert await iq_error(reader, svc, "set", f"<pubsub xmlns='{PUBSUB}'><subscribe "
                              f"node='feed2' jid='{owner.boundjid.bare}'/></pubsub>") == (
            "modify", "bad-request", "invalid-jid")
        await disconnect(owner, reader, stranger)

    run(scenario())


def test_paging_and_publish_options(shared_server: ServerProcess) -> None:
    async def scenario() -> None:
        (owner,) = await clients(shared_server, "owner3")
        svc = service_jid(shared_server)
        await owner.plugin["xep_0060"].create_node(svc, "paged")
        for i in range(5):
            await raw_iq(owner, svc, "set", publish_xml("paged", f"p{i}", f"Item {i}"))
        page = await raw_iq(owner, svc, "get", f"<pubsub xmlns='{PUBSUB}'><items node='paged'/>"
                            f"<set xmlns='http://jabber.org/protocol/rsm'><max>2</max></set>"
                            f"</pubsub>")
        first = [i.get("id") for i in page.iter(f"{{{PUBSUB}}}item")]
        last = page.find(".//{http://jabber.org/protocol/rsm}last").text
        assert page.find(".//{http://jabber.org/protocol/rsm}count").text == "5"
        page2 = await raw_iq(owner, svc, "get", f"<pubsub xmlns='{PUBSUB}'><items node='paged'/>"
                             f"<set xmlns='http://jabber.org/protocol/rsm'><max>2</max>"
                             f"<after>{last}</after></set></pubsub>")
        second = [i.get("id") for i in page2.iter(f"{{{PUBSUB}}}item")]
        assert len(first) == len(second) == 2 and not set(first) & set(second)
        # disco#items of a leaf lists its item ids, paged (XEP-0060 §5.5, XEP-0059)
        items = await raw_iq(owner, svc, "get", "<query xmlns='http://jabber.org/protocol/"
                             "disco#items' node='paged'><set xmlns='http://jabber.org/protocol/"
                             "rsm'><max>3</max></set></query>")
        assert len(list(items.iter("{http://jabber.org/protocol/disco#items}item"))) == 3

        # §7.1.5 publish-options: met precondition passes, unmet → conflict/precondition-not-met
        met = "<publish-options>" + config_form("publish-options", access_model="open") + \
            "</publish-options>"
        await raw_iq(owner, svc, "set", publish_xml("paged", "ok", "ok", met))
        unmet = "<publish-options>" + config_form("publish-options",
                                                  access_model="whitelist") + "</publish-options>"
        assert await iq_error(owner, svc, "set", publish_xml("paged", "no", "no", unmet)) == (
            "cancel", "conflict", "precondition-not-met")
        await disconnect(owner)

    run(scenario())


def test_access_models_and_owner_management(shared_server: ServerProcess) -> None:
    async def scenario() -> None:
        owner, reader, outsider = await clients(shared_server, "owner4", "reader4", "outsider4")
        svc = service_jid(shared_server)
        reader_jid = reader.boundjid.bare

        def subscribe(node: str, jid: str) -> str:
            return f"<pubsub xmlns='{PUBSUB}'><subscribe node='{node}' jid='{jid}'/></pubsub>"

        for node, model in (("wl", "whitelist"), ("pres", "presence"), ("auth", "authorize")):
            await raw_iq(owner, svc, "set", f"<pubsub xmlns='{PUBSUB}'><create node='{node}'/>"
                         f"<configure>{config_form('node_config', access_model=model)}"
                         f"</configure></pubsub>")
        # §6.1.3.5 whitelist → not-allowed + closed-node; §6.1.3.2 presence → not-authorized
        assert await iq_error(reader, svc, "set", subscribe("wl", reader_jid)) == (
            "cancel", "not-allowed", "closed-node")
        assert await iq_error(reader, svc, "set", subscribe("pres", reader_jid)) == (
            "auth", "not-authorized", "presence-subscription-required")
        # §8.9 the owner whitelists the reader (member affiliation), then it may subscribe
        await raw_iq(owner, svc, "set", f"<pubsub xmlns='{OWNER}'><affiliations node='wl'>"
                     f"<affiliation jid='{reader_jid}' affiliation='member'/></affiliations>"
                     f"</pubsub>")
        affs = await raw_iq(owner, svc, "get",
                            f"<pubsub xmlns='{OWNER}'><affiliations node='wl'/></pubsub>")
        assert (reader_jid, "member") in {(a.get("jid"), a.get("affiliation"))
                                          for a in affs.iter(f"{{{OWNER}}}affiliation")}
        await raw_iq(reader, svc, "set", subscribe("wl", reader_jid))
        # §8.8 the owner lists and removes subscriptions
        subs = await raw_iq(owner, svc, "get",
                            f"<pubsub xmlns='{OWNER}'><subscriptions node='wl'/></pubsub>")
        assert [s.get("jid") for s in subs.iter(f"{{{OWNER}}}subscription")] == [reader_jid]
        await raw_iq(owner, svc, "set", f"<pubsub xmlns='{OWNER}'><subscriptions node='wl'>"
                     f"<subscription jid='{reader_jid}' subscription='none'/></subscriptions>"
                     f"</pubsub>")
        subs = await raw_iq(owner, svc, "get",
                            f"<pubsub xmlns='{OWNER}'><subscriptions node='wl'/></pubsub>")
        assert list(subs.iter(f"{{{OWNER}}}subscription")) == []
        # an outcast may not subscribe (§6.1.3.8)
        await raw_iq(owner, svc, "set", f"<pubsub xmlns='{OWNER}'><affiliations node='wl'>"
                     f"<affiliation jid='{outsider.boundjid.bare}' affiliation='outcast'/>"
                     f"</affiliations></pubsub>")
        assert (await iq_error(outsider, svc, "set", subscribe("wl", outsider.boundjid.bare)))[
            :2] == ("auth", "forbidden")

        # §6.1.4 / §8.6 authorize: pending, the owner gets a form and approves it by message
        forms = message_form_queue(owner)
        result = await raw_iq(reader, svc, "set", subscribe("auth", reader_jid))
        assert result.find(f".//{{{PUBSUB}}}subscription").get("subscription") == "pending"
        form = await asyncio_wait(forms)
        values = {f.get("var"): (f.findtext("{jabber:x:data}value") or "")
                  for f in form.iter("{jabber:x:data}field")}
        assert values["pubsub#subscriber_jid"] == reader_jid and values["pubsub#node"] == "auth"
        answer = owner.Message()
        answer["to"] = svc
        answer.append(ET.fromstring(
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>"
            "http://jabber.org/protocol/pubsub#subscribe_authorization</value></field>"
            f"<field var='pubsub#subid'><value>{values['pubsub#subid']}</value></field>"
            "<field var='pubsub#node'><value>auth</value></field>"
            f"<field var='pubsub#subscriber_jid'><value>{reader_jid}</value></field>"
            "<field var='pubsub#allow'><value>true</value></field></x>"))
        events = message_queue(reader)
        answer.send()
        approved = (await next_event(events)).find(f".//{{{EVENT}}}subscription")
        assert (approved.get("node"), approved.get("subscription")) == ("auth", "subscribed")
        await raw_iq(owner, svc, "set", publish_xml("auth", "ok", "Approved"))
        assert item_ids(await next_event(events)) == ["ok"]
        await disconnect(owner, reader, outsider)

    run(scenario())


def message_form_queue(client: Any) -> Any:
    import asyncio

    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath

    queue: asyncio.Queue[Any] = asyncio.Queue()
    client.register_handler(Callback("approval forms", MatchXPath(
        "{jabber:client}message/{jabber:x:data}x"), lambda m: queue.put_nowait(
            m.xml.find("{jabber:x:data}x"))))
    return queue


async def asyncio_wait(queue: Any) -> Any:
    import asyncio

    return await asyncio.wait_for(queue.get(), 5)


def test_options_bodies_and_collections(shared_server: ServerProcess) -> None:
    async def scenario() -> None:
        owner, reader = await clients(shared_server, "owner5", "reader5")
        svc = service_jid(shared_server)
        reader_jid = reader.boundjid.bare
        await owner.plugin["xep_0060"].create_node(svc, "opts")
        events = message_queue(reader)
        # §6.3.7 subscribe with options: a plain-text body for chat clients, a word filter
        options = config_form("subscribe_options", include_body="true").replace(
            "</x>", "<field var='pubsubd#include_words'><value>kittens</value></field></x>")
        result = await raw_iq(reader, svc, "set", f"<pubsub xmlns='{PUBSUB}'><subscribe "
                              f"node='opts' jid='{reader_jid}'/><options>{options}</options>"
                              f"</pubsub>")
        subid = result.find(f".//{{{PUBSUB}}}subscription").get("subid")
        await raw_iq(owner, svc, "set", publish_xml("opts", "dogs", "All about dogs"))
        await raw_iq(owner, svc, "set", publish_xml("opts", "cats", "Kittens today"))
        event = await next_event(events)
        assert item_ids(event) == ["cats"]
        assert "Kittens today" in event.findtext("{jabber:client}body")
        # §6.3 options retrieval and submission; a bad value → bad-request
        got = await raw_iq(reader, svc, "get", f"<pubsub xmlns='{PUBSUB}'><options node='opts' "
                           f"jid='{reader_jid}'/></pubsub>")
        fields = {f.get("var"): f.findtext("{jabber:x:data}value")
                  for f in got.iter("{jabber:x:data}field")}
        assert fields["pubsub#include_body"] == "1"
        assert (await iq_error(reader, svc, "set", f"<pubsub xmlns='{PUBSUB}'><options "
                               f"node='opts' jid='{reader_jid}' subid='{subid}'>"
                               f"{config_form('subscribe_options', deliver='maybe')}</options>"
                               f"</pubsub>"))[1] == "bad-request"
        await raw_iq(reader, svc, "set", f"<pubsub xmlns='{PUBSUB}'><options node='opts' "
                     f"jid='{reader_jid}' subid='{subid}'>"
                     f"{config_form('subscribe_options', deliver='false')}</options></pubsub>")
        await raw_iq(owner, svc, "set", publish_xml("opts", "cats2", "More kittens"))
        await no_event(events, reader)

        # XEP-0248: a collection, a leaf inside, a subscriber of the collection gets its items
        await raw_iq(owner, svc, "set", f"<pubsub xmlns='{PUBSUB}'><create node='coll'/>"
                     f"<configure>{config_form('node_config', node_type='collection')}"
                     f"</configure></pubsub>")
        await raw_iq(owner, svc, "set", f"<pubsub xmlns='{PUBSUB}'><create node='leaf'/>"
                     f"<configure>{config_form('node_config', collection='coll')}"
                     f"</configure></pubsub>")
        children = await owner.plugin["xep_0030"].get_items(jid=svc, node="coll")
        assert [i[1] for i in children["disco_items"]["items"]] == ["leaf"]
        await reader.plugin["xep_0060"].subscribe(svc, "coll")
        await raw_iq(owner, svc, "set", publish_xml("leaf", "deep", "Deep item"))
        event = await next_event(events)
        assert item_ids(event) == ["deep"]
        assert event.find(f".//{{{EVENT}}}items").get("node") == "leaf"
        headers = {h.get("name"): h.text for h in event.iter("{http://jabber.org/protocol/shim}header")}
        assert headers.get("Collection") == "coll"
        await disconnect(owner, reader)

    run(scenario())
