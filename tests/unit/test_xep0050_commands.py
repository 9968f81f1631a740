"""XEP-0050 sessions driven directly through handle_command_iq: stages, prev, errors, expiry."""

from __future__ import annotations

import pytest
from lxml import etree

from pubsubd import ns
from pubsubd.core.router import Stanza
from pubsubd.errors import StanzaError
from pubsubd.jid import JID
from pubsubd.modules.xep0050_commands import (
    Command,
    CommandRegistry,
    CommandSession,
    Done,
    Note,
    Stage,
    handle_command_iq,
)
from pubsubd.xml import builders
from pubsubd.xml.forms import Field, Form

ALICE = JID.parse("alice@example.org/home")
BOB = JID.parse("bob@example.org/work")
C = ns.COMMANDS


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def pick_service(session: CommandSession, _: Form | None) -> Stage:
    return Stage(Form("form", fields=[Field("service", "list-single", required=True)]))


async def pick_state(session: CommandSession, form: Form | None) -> Stage:
    assert form is not None
    session.data["service"] = form.value("service")
    return Stage(Form("form", fields=[Field("state", "text-single", required=True)]))


async def finish(session: CommandSession, form: Form | None) -> Done:
    assert form is not None
    return Done([Note(f"{session.data['service']} is {form.value('state')}")])


async def reveal(session: CommandSession, _: Form | None) -> Done:
    return Done([Note("the secret")])


def registry(clock: Clock) -> CommandRegistry:
    reg = CommandRegistry(timeout=60, clock=clock)
    reg.add(Command("config", "Configure", [pick_service, pick_state, finish]))
    reg.add(Command("secret", "Secret", [reveal], allowed=lambda j: j.bare == ALICE.bare))
    return reg


def request(node: str, *, action: str | None = None, sid: str | None = None,
            values: dict[str, str] | None = None, sender: JID = ALICE) -> Stanza:
    iq = builders.iq("set", to="example.org", from_=str(sender))
    cmd = builders.child(iq, C, "command", node=node)
    if action:
        cmd.set("action", action)
    if sid:
        cmd.set("sessionid", sid)
    if values is not None:
        form = Form("submit", fields=[Field(k, values=[v]) for k, v in values.items()])
        cmd.append(form.to_element())
    return Stanza(iq, sender, JID.parse("example.org"))


def actions(el: etree._Element) -> tuple[str | None, list[str]]:
    acts = el.find(f"{{{C}}}actions")
    assert acts is not None
    return acts.get("execute"), [etree.QName(a).localname for a in acts]


def app_condition(exc: pytest.ExceptionInfo[StanzaError]) -> str | None:
    app = exc.value.app
    return etree.QName(app).localname if app is not None else None


async def test_three_stages_with_prev_and_completion() -> None:
    reg = registry(Clock())
    first = await handle_command_iq(reg, request("config"))
    sid = first.get("sessionid")
    assert first.get("status") == "executing" and sid
    assert actions(first) == ("next", ["next"])
    second = await handle_command_iq(reg, request("config", sid=sid, action="next",
                                                  values={"service": "httpd"}))
    assert actions(second) == ("complete", ["prev", "complete"])
    back = await handle_command_iq(reg, request("config", sid=sid, action="prev"))
    assert actions(back) == ("next", ["next"])
    # XEP-0050 §2.4.2 Example 17: the earlier answer is shown again.
    assert back.findtext(f".//{{{ns.DATA_FORMS}}}value") == "httpd"
    await handle_command_iq(reg, request("config", sid=sid, values={"service": "jabberd"}))
    done = await handle_command_iq(reg, request("config", sid=sid, action="complete",
                                                values={"state": "on"}))
    assert done.get("status") == "completed"
    assert done.findtext(f"{{{C}}}note") == "jabberd is on"
    with pytest.raises(StanzaError) as exc:
        await handle_command_iq(reg, request("config", sid=sid, values={"state": "on"}))
    assert exc.value.condition.value == "not-allowed" and app_condition(exc) == "session-expired"


async def test_action_and_payload_errors() -> None:
    reg = registry(Clock())
    sid = (await handle_command_iq(reg, request("config"))).get("sessionid")
    cases = [
        (dict(action="complete", values={"service": "x"}), "bad-action"),  # only next here
        (dict(action="prev"), "bad-action"),  # nothing before the first stage
        (dict(action="dance"), "malformed-action"),
        (dict(action="next"), "bad-payload"),  # no form
        (dict(action="next", values={"other": "x"}), "bad-payload"),  # unknown, missing field
    ]
    for kwargs, condition in cases:
        with pytest.raises(StanzaError) as exc:
            st = request("config", sid=sid, **kwargs)  # type: ignore[arg-type]
            await handle_command_iq(reg, st)
        assert app_condition(exc) == condition, kwargs
    with pytest.raises(StanzaError) as exc:
        await handle_command_iq(reg, request("config", sid="made-up"))
    assert app_condition(exc) == "bad-sessionid"
    with pytest.raises(StanzaError) as exc:  # another requester cannot use the session
        await handle_command_iq(reg, request("config", sid=sid, sender=BOB,
                                             values={"service": "x"}))
    assert app_condition(exc) == "bad-sessionid"
    lang = request("config")
    lang.element[0].set(ns.XML_LANG, "fr-CA")
    with pytest.raises(StanzaError) as exc:
        await handle_command_iq(reg, lang)
    assert app_condition(exc) == "bad-locale"
    cancel = await handle_command_iq(reg, request("config", sid=sid, action="cancel"))
    assert cancel.get("status") == "canceled"


async def test_sessions_expire() -> None:
    clock = Clock()
    reg = registry(clock)
    sid = (await handle_command_iq(reg, request("config"))).get("sessionid")
    clock.now += 61
    with pytest.raises(StanzaError) as exc:
        await handle_command_iq(reg, request("config", sid=sid, values={"service": "x"}))
    assert app_condition(exc) == "session-expired"
    assert reg.session_count() == 0


async def test_visibility_and_discovery() -> None:
    reg = registry(Clock())
    nodes = [i.get("node") for i in reg.items_element("example.org", BOB)]
    assert nodes == ["config"]
    assert "secret" in [i.get("node") for i in reg.items_element("example.org", ALICE)]
    with pytest.raises(StanzaError) as exc:
        await handle_command_iq(reg, request("secret", sender=BOB))
    assert exc.value.condition.value == "forbidden"
    with pytest.raises(StanzaError) as exc:
        reg.info_element("secret", BOB)
    assert exc.value.condition.value == "forbidden"
    info = reg.info_element("config", BOB)
    assert info[0].get("category") == "automation" and info[0].get("type") == "command-node"
    with pytest.raises(StanzaError) as exc:
        await handle_command_iq(reg, request("nope"))
    assert exc.value.condition.value == "item-not-found"
    done = await handle_command_iq(reg, request("secret"))  # a one-step command: no session left
    assert done.get("status") == "completed" and reg.session_count() == 0
