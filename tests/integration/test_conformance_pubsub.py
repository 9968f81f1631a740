"""Pubsub details clients rely on: XEP-0122 datatypes in node configuration forms, node titles
as disco#items names (XEP-0060 §5.2, also on PEP) and the unsubscribe result (§6.2.2)."""

from __future__ import annotations

from typing import Any

from harness import ServerProcess, connect, disconnect, run

from .pubsub_helpers import OWNER, PUBSUB, PUBSUB_PLUGINS, raw_iq, service_jid

XDATA = "jabber:x:data"
XDV = "http://jabber.org/protocol/xdata-validate"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
CONFIG_FORM = (f"<x xmlns='{XDATA}' type='submit'><field var='FORM_TYPE' type='hidden'>"
               f"<value>{PUBSUB}#node_config</value></field>"
               "<field var='pubsub#title'><value>{title}</value></field>"
               "<field var='pubsub#access_model'><value>open</value></field></x>")


def validation(form: Any) -> dict[str, tuple[str | None, dict[str, str]]]:
    """var → (datatype, attributes of <range/>) for each field with a <validate/>."""
    found = {}
    for field in form.iter(f"{{{XDATA}}}field"):
        validate = field.find(f"{{{XDV}}}validate")
        if validate is not None:
            bounds = validate.find(f"{{{XDV}}}range")
            found[field.get("var")] = (validate.get("datatype"),
                                       dict(bounds.attrib) if bounds is not None else {})
    return found


def test_node_configuration_form_declares_datatypes(shared_server: ServerProcess) -> None:
    jid = shared_server.add_user("typed")
    service = service_jid(shared_server)

    async def scenario() -> None:
        client = await connect(shared_server, jid, plugins=PUBSUB_PLUGINS)
        await raw_iq(client, service, "set",
                     f"<pubsub xmlns='{PUBSUB}'><create node='typed'/></pubsub>")
        answer = await raw_iq(client, service, "get",
                              f"<pubsub xmlns='{OWNER}'><configure node='typed'/></pubsub>")
        checks = validation(answer)
        # XEP-0060 §12.23: an integer or "max", bounded by the service's limit.
        assert checks["pubsub#max_items"] == ("pubsub:integer-or-max", {"min": "0", "max": "1000"})
        assert checks["pubsub#max_payload_size"][0] == "xs:integer"
        assert checks["pubsub#max_payload_size"][1]["max"] == "65536"
        booleans = {f.get("var") for f in answer.iter(f"{{{XDATA}}}field")
                    if f.get("type") == "boolean"}
        assert booleans and all(checks[var] == ("xs:boolean", {}) for var in booleans)
        assert "pubsub#title" not in checks
        # The validate element precedes the values (XEP-0122 §3.1).
        field = next(f for f in answer.iter(f"{{{XDATA}}}field")
                     if f.get("var") == "pubsub#max_items")
        assert field[0].tag == f"{{{XDV}}}validate"
        default = await raw_iq(client, service, "get",
                               f"<pubsub xmlns='{OWNER}'><default/></pubsub>")
        assert validation(default)["pubsub#max_items"][0] == "pubsub:integer-or-max"
        await disconnect(client)

    run(scenario())


def test_titles_are_names_and_unsubscribe_confirms(shared_server: ServerProcess) -> None:
    owner_jid = shared_server.add_user("titled")
    reader_jid = shared_server.add_user("titlereader")
    service = service_jid(shared_server)

    async def scenario() -> None:
        owner = await connect(shared_server, owner_jid, plugins=PUBSUB_PLUGINS)
        reader = await connect(shared_server, reader_jid, plugins=PUBSUB_PLUGINS)
        form = CONFIG_FORM.format(title="Princely Musings")
        await raw_iq(owner, service, "set", f"<pubsub xmlns='{PUBSUB}'><create node='musings'/>"
                     f"<configure>{form}</configure></pubsub>")
        # A PEP node with a title (XEP-0163 over XEP-0060 §5.2).
        await raw_iq(owner, "", "set", f"<pubsub xmlns='{PUBSUB}'><create node='urn:x:diary'/>"
                     f"<configure>{CONFIG_FORM.format(title='Diary')}</configure></pubsub>")
        for jid, node, title in ((service, "musings", "Princely Musings"),
                                 (owner_jid, "urn:x:diary", "Diary")):
            items = await raw_iq(reader, jid, "get", f"<query xmlns='{DISCO_ITEMS}'/>")
            names = {i.get("node"): i.get("name") for i in items.iter(f"{{{DISCO_ITEMS}}}item")}
            assert names.get(node) == title, (jid, names)
        subscribed = await raw_iq(reader, service, "set", f"<pubsub xmlns='{PUBSUB}'><subscribe "
                                  f"node='musings' jid='{reader_jid}'/></pubsub>")
        subid = subscribed.find(f".//{{{PUBSUB}}}subscription").get("subid")
        answer = await raw_iq(reader, service, "set", f"<pubsub xmlns='{PUBSUB}'><unsubscribe "
                              f"node='musings' jid='{reader_jid}'/></pubsub>")
        sub = answer.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}subscription")
        assert sub is not None, "§6.2.2: the result carries the subscription"
        assert (sub.get("node"), sub.get("jid"), sub.get("subscription")) == (
            "musings", reader_jid, "none")
        assert sub.get("subid") == subid  # §6.2.2: present when subids are supported
        await disconnect(owner, reader)

    run(scenario())
