"""XEP-0049 private XML storage with slixmpp's xep_0049 plugin: fragments kept per account and
per (namespace, element name), durable, invisible to other accounts, reserved namespaces refused."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
from harness import ServerProcess, connect, disconnect, run
from slixmpp.exceptions import IqError
from slixmpp.xmlstream import ElementBase

PRIVATE = "{jabber:iq:private}query"
PLUGINS = ("xep_0030", "xep_0049")


class Prefs(ElementBase):
    name = "prefs"
    namespace = "urn:example:prefs"
    plugin_attrib = "example_prefs"
    interfaces = {"theme"}
    sub_interfaces = interfaces


class Notes(ElementBase):
    name = "notes"
    namespace = "urn:example:notes"
    plugin_attrib = "example_notes"
    interfaces = {"text"}
    sub_interfaces = interfaces


async def client_for(server: ServerProcess, jid: str) -> Any:
    client = await connect(server, jid, plugins=PLUGINS, presence=False)
    client.plugin["xep_0049"].register(Prefs)
    client.plugin["xep_0049"].register(Notes)
    return client


def prefs(theme: str) -> Prefs:
    el = Prefs()
    el["theme"] = theme
    return el


async def stored_theme(client: Any) -> str:
    result = await client.plugin["xep_0049"].retrieve("example_prefs", timeout=5)
    return str(result["private"]["example_prefs"]["theme"])


async def raw_iq(client: Any, type_: str, query: str, to: str | None = None) -> Any:
    iq = client.make_iq_set() if type_ == "set" else client.make_iq_get()
    if to is not None:
        iq["to"] = to
    iq.append(ET.fromstring(query))
    return await iq.send(timeout=5)


def test_store_replace_and_retrieve_survive_a_restart(server: ServerProcess) -> None:
    alice = server.add_user("alice")

    async def store() -> None:
        client = await client_for(server, alice)
        notes = Notes()
        notes["text"] = "buy milk"
        await client.plugin["xep_0049"].store([prefs("dark"), notes], timeout=5)
        assert await stored_theme(client) == "dark"
        await client.plugin["xep_0049"].store(prefs("light"), timeout=5)  # same key: replaced
        assert await stored_theme(client) == "light"
        kept = await client.plugin["xep_0049"].retrieve("example_notes", timeout=5)
        assert kept["private"]["example_notes"]["text"] == "buy milk"  # other key untouched
        await disconnect(client)

    async def read_back() -> None:
        client = await client_for(server, alice)
        assert await stored_theme(client) == "light"
        await disconnect(client)

    run(store())
    server.restart(hard=True)  # committed before the result, so it survives kill -9
    run(read_back())


def test_storage_is_private_to_its_owner(shared_server: ServerProcess) -> None:
    carol, dave = shared_server.add_user("carol"), shared_server.add_user("dave")

    async def scenario() -> None:
        c = await client_for(shared_server, carol)
        d = await client_for(shared_server, dave)
        await c.plugin["xep_0049"].store(prefs("solarized"), timeout=5)
        # Nothing stored for dave under that key: the empty element comes back.
        empty = await d.plugin["xep_0049"].retrieve("example_prefs", timeout=5)
        assert empty["private"].xml.find("{urn:example:prefs}prefs") is not None
        assert empty["private"]["example_prefs"]["theme"] == ""
        for type_ in ("get", "set"):
            with pytest.raises(IqError) as err:
                await raw_iq(d, type_, "<query xmlns='jabber:iq:private'>"
                             "<prefs xmlns='urn:example:prefs'/></query>", to=carol)
            assert err.value.iq["error"]["condition"] == "forbidden"
        assert await stored_theme(c) == "solarized"
        await disconnect(c, d)

    run(scenario())


REFUSED = [
    ("set", "<x xmlns='jabber:client'/>", "not-acceptable"),  # reserved namespaces
    ("set", "<x xmlns='jabber:server'/>", "not-acceptable"),
    ("get", "<x xmlns='jabber:client'/>", "not-acceptable"),
    ("set", "<q xmlns='jabber:iq:private'/>", "not-acceptable"),
    ("set", "<ok xmlns='urn:ok'><v>1</v></ok><x xmlns='jabber:client'/>", "not-acceptable"),
    ("set", "", "not-acceptable"),  # nothing to store
    ("get", "", "bad-request"),  # XEP-0049's "Bad Format"
    ("get", "<a xmlns='urn:a'/><b xmlns='urn:b'/>", "bad-request"),  # one namespace per get
]


def test_refused_requests(shared_server: ServerProcess) -> None:
    erin = shared_server.add_user("erin")

    async def scenario() -> None:
        client = await client_for(shared_server, erin)
        for type_, payload, condition in REFUSED:
            with pytest.raises(IqError) as err:
                await raw_iq(client, type_, f"<query xmlns='jabber:iq:private'>{payload}</query>")
            assert err.value.iq["error"]["condition"] == condition, (type_, payload)
        # A refused set stores nothing, not even its acceptable part.
        result = await raw_iq(client, "get", "<query xmlns='jabber:iq:private'>"
                              "<ok xmlns='urn:ok'/></query>")
        assert len(result.xml.find(PRIVATE).find("{urn:ok}ok")) == 0
        await disconnect(client)

    run(scenario())
