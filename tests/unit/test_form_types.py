"""Every data form the server emits carries the field types registered for its FORM_TYPE
(XEP-0045 §15.5, XEP-0060 §16.4, XEP-0133, XEP-0313): strict clients reject a whole form for one
wrong type, as they did when muc#roomconfig_maxusers was sent as text-single.

Forms are built in process, by the code that sends them: the MUC room forms, the pubsub node,
subscription and meta-data forms, the MAM query form, and the first stage of every ad-hoc
command the composed server registers (XEP-0133 and the feed service's)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from lxml import etree

from pubsubd import ns
from pubsubd.app import Server
from pubsubd.config import loads
from pubsubd.core.router import Stanza
from pubsubd.errors import StanzaError
from pubsubd.jid import JID
from pubsubd.modules.xep0045_muc import requests
from pubsubd.modules.xep0045_muc.archive import RoomArchive
from pubsubd.modules.xep0045_muc.config_form import config_form
from pubsubd.modules.xep0045_muc.room import Room, RoomConfig
from pubsubd.modules.xep0050_commands import CommandSession, CommandsModule, Done, Stage
from pubsubd.modules.xep0060_pubsub import PubSubComponent
from pubsubd.modules.xep0060_pubsub.dataforms import form_element, meta_data_form
from pubsubd.modules.xep0313_mam import MamModule
from pubsubd.pubsub.model import NodeType, SubscriptionOptions
from pubsubd.xml import builders
from pubsubd.xml.forms import Form

from .form_registry import REGISTERED

ADMIN = JID.parse("admin@example.test/desk")
_X = ns.clark(ns.DATA_FORMS, "x")
_VALIDATE = "http://jabber.org/protocol/xdata-validate"
# Prefixes owned by registered FORM_TYPEs: a field under them must be a registered one.
_REGISTERED_PREFIXES = ("muc#", "pubsub#")


def problems(x: etree._Element) -> list[str]:
    """What is wrong with one emitted form, as readable lines (empty if nothing)."""
    form = Form.from_element(x)
    found = []
    # XEP-0122 §4: <open/> lets a list take values beyond its options
    open_lists = {f.get("var") for f in x.iter(ns.clark(ns.DATA_FORMS, "field"))
                  if f.find(f"{{{_VALIDATE}}}validate/{{{_VALIDATE}}}open") is not None}
    registered = REGISTERED.get(form.form_type or "")
    for field in form.fields:
        var = field.var or ""
        # XEP-0004 §3.3: outside a form to fill in, the type is optional.
        kind = field.type or ("text-single" if form.type == "form" else None)
        if form.type == "form" and field.type in ("list-single", "list-multi") \
                and var not in open_lists:
            offered = {o.value for o in field.options}
            chosen = {v for v in field.values if v}  # an empty value is no choice yet
            if not chosen <= offered:
                found.append(f"{form.form_type} {var}: values {field.values} not among options")
        if var == "FORM_TYPE" or registered is None:
            continue
        allowed = registered.get(var)
        if allowed is None:
            if var.startswith(_REGISTERED_PREFIXES) or "#" not in var:
                found.append(f"{form.form_type} {var}: not a registered field")
            continue
        if kind is not None and kind not in ({allowed} if isinstance(allowed, str) else allowed):
            found.append(f"{form.form_type} {var}: {kind}, registered as {allowed}")
    return found


def forms_in(element: etree._Element) -> list[etree._Element]:
    return [element] if element.tag == _X else list(element.iter(_X))


def test_the_check_catches_a_wrongly_typed_field() -> None:
    form = config_form(RoomConfig(), 200, [], []).to_element()
    maxusers = next(f for f in form if f.get("var") == "muc#roomconfig_maxusers")
    maxusers.set("type", "text-single")  # the regression this test exists for
    assert problems(form) == [
        "http://jabber.org/protocol/muc#roomconfig muc#roomconfig_maxusers: text-single, "
        "registered as list-single"]


# --- multi-user chat ----------------------------------------------------------------------


ROOM = JID.parse("lobby@conference.example.test")
CONFIGS = [
    RoomConfig(),
    RoomConfig(name="Lobby", persistent=True, members_only=True, moderated=True,
               password_protected=True, password="s3cret", whois="anyone", max_users=37,
               allow_pm="moderators", presence_broadcast=["moderator"], logging=False),
]


@pytest.mark.parametrize("config", CONFIGS)
def test_room_forms(config: RoomConfig) -> None:
    room = Room(ROOM, config, deque(), {"alice@example.test": "owner"}, subject="Hi")
    emitted = [
        config_form(config, 200, ["alice@example.test"], ["bob@example.test"]).to_element(),
        requests.room_info_form(room).to_element(),
        requests.registration_form("alice").to_element(),
        requests.voice_approval_form(JID.parse("v@example.test/x"), "v").to_element(),
        *forms_in(RoomArchive.query_form()),
    ]
    assert [p for x in emitted for p in problems(x)] == []


# --- the composed server: pubsub, MAM and ad-hoc commands ----------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    config = loads(f"""
domains: [example.test]
data_dir: {tmp_path / "var"}
storage: {{path: {tmp_path / "var" / "db.sqlite3"}}}
admins: [admin@example.test]
""")
    srv = Server(config, base_dir=tmp_path)
    yield srv
    srv.services.stores.close()


def test_pubsub_forms(server: Server) -> None:
    pubsub = next(m for m in server.modules if isinstance(m, PubSubComponent))
    service = pubsub.service

    async def build() -> list[etree._Element]:
        await service.create_node(str(ADMIN.bare), "news")
        return [
            form_element(service.default_config().to_form()),
            form_element(service.default_config(NodeType.COLLECTION).to_form()),
            form_element(SubscriptionOptions().to_form()),
            form_element(service.default_subscription_options().to_form()),
            meta_data_form(await service.node_metadata("news")),
        ]

    emitted = trio.run(build)
    assert len(emitted) == 5
    assert [p for x in emitted for p in problems(x)] == []


def test_mam_query_form(server: Server) -> None:
    mam = next(m for m in server.modules if isinstance(m, MamModule))
    iq = builders.iq("get", to=str(ADMIN.bare), from_=str(ADMIN))
    builders.child(iq, ns.MAM, "query")
    emitted = forms_in(trio.run(mam.query_form, Stanza(iq, ADMIN, ADMIN.bare)))
    assert len(emitted) == 1 and problems(emitted[0]) == []


def test_the_first_form_of_every_command(server: Server) -> None:
    """What an administrator sees on executing each registered command (XEP-0050 §3.4)."""
    commands = next(m for m in server.modules if isinstance(m, CommandsModule)).registry

    async def first_forms() -> dict[str, etree._Element]:
        shown = {}
        for command in commands:
            session = CommandSession("s1", command.node, ADMIN, None, float("inf"))
            try:
                outcome = await command.steps[0](session, None)
            except StanzaError:
                continue  # needs state this empty server has not
            form = outcome.form if isinstance(outcome, Stage | Done) else None
            if form is not None:
                shown[command.node] = form.to_element()
        return shown

    shown = trio.run(first_forms)
    # the XEP-0133 commands are all there, with their forms
    assert {f"{ns.ADMIN}#add-user", f"{ns.ADMIN}#set-motd"} <= set(shown)
    assert {node: problems(x) for node, x in shown.items() if problems(x)} == {}
