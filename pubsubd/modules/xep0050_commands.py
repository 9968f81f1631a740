"""XEP-0050 Ad-Hoc Commands: a command registry, multi-stage sessions with data forms, discovery.

The registry knows nothing of the JID it is served on, so any entity can serve one: the server
domain (this module, for XEP-0133 administration) and in-process services such as the pubsub
service on ``pubsub.<domain>``, which builds its own :class:`CommandRegistry` and answers command
IQs with :func:`handle_command_iq` and disco with :meth:`CommandRegistry.items_element` /
:meth:`CommandRegistry.info_element`.

A command is a :class:`Command`: a node, a name, a predicate saying who may see and run it, and
a list of async steps. Step 0 runs on ``execute``; step *i* receives the form submitted for the
stage step *i-1* showed. A step returns a :class:`Stage` (a form to fill, the session goes on)
or a :class:`Done` (the session ends, with notes and an optional result form).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from lxml import etree

from pubsubd import ns
from pubsubd.core.module import Module
from pubsubd.core.router import Router, Stanza
from pubsubd.errors import Condition, StanzaError
from pubsubd.jid import JID
from pubsubd.xml import builders
from pubsubd.xml.forms import Form, FormError

if TYPE_CHECKING:
    from pubsubd.modules.xep0030_disco import DiscoModule

__all__ = [
    "Command",
    "CommandRegistry",
    "CommandSession",
    "CommandsModule",
    "Done",
    "Note",
    "Stage",
    "Step",
    "anyone",
    "command_error",
    "handle_command_iq",
]

COMMAND = ns.clark(ns.COMMANDS, "command")
X_FORM = ns.clark(ns.DATA_FORMS, "x")
ACTIONS = ("execute", "cancel", "prev", "next", "complete")  # XEP-0050 §4.1 Table 2

NoteType = Literal["info", "warn", "error"]


@dataclass(frozen=True, slots=True)
class Note:
    """XEP-0050 §4.3: a human-readable note about the command's state."""

    text: str
    type: NoteType = "info"


@dataclass(slots=True)
class Stage:
    """A form the requester fills in; the session stays open.

    ``final`` says whether the next submission completes the command (offered as ``complete``)
    or leads to another stage (``next``); None lets the registry infer it from the step count.
    """

    form: Form
    notes: list[Note] = field(default_factory=list)
    final: bool | None = None


@dataclass(slots=True)
class Done:
    """The command completed (XEP-0050 §3.6: a failure is a completion with an error note)."""

    notes: list[Note] = field(default_factory=list)
    form: Form | None = None
    payload: list[etree._Element] = field(default_factory=list)  # other namespaced children


@dataclass(slots=True)
class CommandSession:
    """One execution of a command by one requester (XEP-0050 §3.3)."""

    id: str
    node: str
    requester: JID
    lang: str | None
    expires: float
    data: dict[str, Any] = field(default_factory=dict)  # state the steps share
    # The stages shown so far, with what the requester submitted for each (for ``prev``).
    stages: list[Stage] = field(default_factory=list)
    submitted: list[Form] = field(default_factory=list)

    @property
    def step(self) -> int:
        """Index of the step that produced the stage now shown."""
        return len(self.stages) - 1


Step = Callable[[CommandSession, Form | None], Awaitable[Stage | Done]]


def anyone(_: JID) -> bool:
    return True


@dataclass(slots=True)
class Command:
    """An ad-hoc command. ``allowed(requester)`` decides visibility in disco and execution."""

    node: str
    name: str
    steps: Sequence[Step]
    allowed: Callable[[JID], bool] = anyone


def command_error(condition: Condition, specific: str | None = None,
                  text: str | None = None) -> StanzaError:
    """A stanza error with an optional XEP-0050 §4.4 application condition (e.g. bad-action)."""
    app = builders.element(ns.COMMANDS, specific) if specific else None
    return StanzaError(condition, text, app=app)


class CommandRegistry:
    """Commands of one entity and their live sessions, in bounded memory."""

    def __init__(self, *, timeout: float = 600.0, max_sessions: int = 1000,
                 max_per_requester: int = 20, clock: Callable[[], float] | None = None) -> None:
        self.timeout = timeout
        self.max_sessions = max_sessions
        self.max_per_requester = max_per_requester
        self._clock = clock or _trio_clock
        self._commands: dict[str, Command] = {}
        self._sessions: dict[str, CommandSession] = {}
        # Ids of ended sessions, so reusing one is "session-expired" rather than "bad-sessionid".
        self._ended: OrderedDict[str, None] = OrderedDict()
        self.on_added: list[Callable[[Command], None]] = []

    # --- the command list -----------------------------------------------------------------

    def add(self, command: Command) -> Command:
        if not command.steps:
            raise ValueError(f"command {command.node} has no steps")
        self._commands[command.node] = command
        for callback in self.on_added:
            callback(command)
        return command

    def remove(self, node: str) -> None:
        self._commands.pop(node, None)

    def get(self, node: str) -> Command | None:
        return self._commands.get(node)

    def __iter__(self) -> Iterator[Command]:
        return iter(list(self._commands.values()))

    def __contains__(self, node: object) -> bool:
        return node in self._commands

    def visible_to(self, requester: JID) -> list[Command]:
        return [c for c in self._commands.values() if c.allowed(requester)]

    # --- discovery (XEP-0050 §2.2) -------------------------------------------------------

    def items_element(self, jid: str, requester: JID) -> etree._Element:
        """disco#items of the commands node: only what ``requester`` may run."""
        query = builders.element(ns.DISCO_ITEMS, "query", node=ns.COMMANDS)
        for command in self.visible_to(requester):
            etree.SubElement(query, ns.clark(ns.DISCO_ITEMS, "item"),
                             jid=jid, node=command.node, name=command.name)
        return query

    def info_element(self, node: str, requester: JID) -> etree._Element:
        """disco#info of the commands node itself or of one command node."""
        query = builders.element(ns.DISCO_INFO, "query", node=node)
        if node == ns.COMMANDS:
            etree.SubElement(query, ns.clark(ns.DISCO_INFO, "identity"), category="automation",
                             type="command-list", name="Commands")
            return query
        command = self._commands.get(node)
        if command is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND)
        if not command.allowed(requester):
            raise StanzaError(Condition.FORBIDDEN)  # XEP-0050 §2.2: 403 if not available
        etree.SubElement(query, ns.clark(ns.DISCO_INFO, "identity"), category="automation",
                         type="command-node", name=command.name)
        for feature in (ns.COMMANDS, ns.DATA_FORMS):
            etree.SubElement(query, ns.clark(ns.DISCO_INFO, "feature"), var=feature)
        return query

    # --- sessions ----------------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        for sid in [s.id for s in self._sessions.values() if s.expires <= now]:
            self._end(sid)

    def _end(self, sid: str) -> None:
        self._sessions.pop(sid, None)
        self._ended[sid] = None
        while len(self._ended) > 4 * self.max_sessions:
            self._ended.popitem(last=False)

    def _open(self, command: Command, requester: JID, lang: str | None) -> CommandSession:
        if len(self._sessions) >= self.max_sessions:
            raise StanzaError(Condition.RESOURCE_CONSTRAINT, "too many command sessions")
        mine = sum(1 for s in self._sessions.values() if s.requester == requester)
        if mine >= self.max_per_requester:
            # XEP-0050 §3.3: a responder limiting parallel sessions answers not-allowed.
            raise StanzaError(Condition.NOT_ALLOWED, "too many open command sessions")
        sid = secrets.token_urlsafe(12)
        session = CommandSession(sid, command.node, requester, lang,
                                 self._clock() + self.timeout)
        return session

    def session_count(self) -> int:
        return len(self._sessions)

    # --- execution (XEP-0050 §2.4, §3.4) ------------------------------------------------

    async def handle(self, st: Stanza) -> etree._Element:
        return await handle_command_iq(self, st)


async def handle_command_iq(registry: CommandRegistry, st: Stanza) -> etree._Element:
    """Answer one ``<command/>`` IQ set: the ``<command/>`` of the result, or a StanzaError."""
    request = st.element[0]
    requester = st.from_
    node = request.get("node")
    if not node:
        raise StanzaError(Condition.BAD_REQUEST, "the command node is missing")
    command = registry.get(node)
    if command is None:
        raise StanzaError(Condition.ITEM_NOT_FOUND)  # XEP-0050 §4.4
    if not command.allowed(requester):
        raise StanzaError(Condition.FORBIDDEN)
    action = request.get("action") or "execute"
    if action not in ACTIONS:
        raise command_error(Condition.BAD_REQUEST, "malformed-action", f"unknown action {action!r}")
    lang = request.get(ns.XML_LANG)
    # XEP-0050 §3.7: we speak English only. Only an explicit locale on <command/> is refused:
    # the stanza's xml:lang is usually the client's UI default for the whole stream.
    if lang and not lang.lower().startswith("en"):
        raise command_error(Condition.BAD_REQUEST, "bad-locale", "only English is available")
    now = registry._clock()
    registry._expire(now)
    sid = request.get("sessionid")
    if not sid:
        if action != "execute":
            raise command_error(Condition.BAD_REQUEST, "bad-action",
                                f"{action} needs a session; start with execute")
        opened = registry._open(command, requester, lang)
        outcome = await command.steps[0](opened, None)
        return _answer(registry, command, opened, outcome)
    session = registry._sessions.get(sid)
    if session is None:
        if sid in registry._ended:
            raise command_error(Condition.NOT_ALLOWED, "session-expired")
        raise command_error(Condition.BAD_REQUEST, "bad-sessionid")
    if session.node != node or session.requester != requester:
        # XEP-0050 §3.3: a session is valid only between one requester/responder pair.
        raise command_error(Condition.BAD_REQUEST, "bad-sessionid")
    session.expires = now + registry.timeout
    if action == "cancel":
        registry._end(sid)
        return _command_element(node, sid, "canceled", session.lang)
    allowed = _allowed_actions(command, session)
    if action == "execute":
        action = _default_action(allowed)
    if action not in allowed:
        raise command_error(Condition.BAD_REQUEST, "bad-action",
                            f"{action} is not possible at this stage")
    if action == "prev":
        session.stages.pop()
        previous = session.submitted.pop()
        return _stage_element(command, session, session.stages[-1], previous)
    template = session.stages[-1].form
    submitted = _submitted_form(request, template)
    outcome = await command.steps[session.step + 1](session, submitted)
    if isinstance(outcome, Stage):
        session.submitted.append(submitted)
    return _answer(registry, command, session, outcome)


def _submitted_form(request: etree._Element, template: Form) -> Form:
    x = request.find(X_FORM)
    if x is None:
        raise command_error(Condition.BAD_REQUEST, "bad-payload", "the form is missing")
    try:
        form = Form.from_element(x)
        if form.type == "cancel":
            form.type = "submit"  # XEP-0050 §3.5.1: treat <x type='cancel'/> as a submission
        template.validate(form)
    except FormError as exc:
        raise command_error(Condition.BAD_REQUEST, "bad-payload", str(exc)) from None
    return form


def _allowed_actions(command: Command, session: CommandSession) -> list[str]:
    """The <actions/> of the stage now shown (XEP-0050 §3.4)."""
    stage = session.stages[-1]
    final = stage.final
    if final is None:
        final = session.step + 2 >= len(command.steps)
    actions = ["prev"] if session.step > 0 else []
    actions.append("complete" if final else "next")
    return actions


def _default_action(allowed: list[str]) -> str:
    return "complete" if "complete" in allowed else "next"


def _answer(registry: CommandRegistry, command: Command, session: CommandSession,
            outcome: Stage | Done) -> etree._Element:
    if isinstance(outcome, Done):
        registry._end(session.id)
        el = _command_element(command.node, session.id, "completed", session.lang)
        for note in outcome.notes:
            _note(el, note)
        if outcome.form is not None:
            el.append(outcome.form.to_element())
        for payload in outcome.payload:
            el.append(payload)
        return el
    if session.step + 1 >= len(command.steps):
        raise RuntimeError(f"command {command.node}: the last step must return Done")
    session.stages.append(outcome)
    registry._sessions[session.id] = session
    return _stage_element(command, session, outcome, None)


def _stage_element(command: Command, session: CommandSession, stage: Stage,
                   previous: Form | None) -> etree._Element:
    el = _command_element(command.node, session.id, "executing", session.lang)
    allowed = _allowed_actions(command, session)
    actions = etree.SubElement(el, ns.clark(ns.COMMANDS, "actions"),
                               execute=_default_action(allowed))
    for action in allowed:
        etree.SubElement(actions, ns.clark(ns.COMMANDS, action))
    for note in stage.notes:
        _note(el, note)
    form = stage.form
    if previous is not None:
        # XEP-0050 §2.4.2 Example 17: going back shows the values given before.
        form = deepcopy(form)
        for f in form.fields:
            if f.var is not None and f.type not in ("hidden", "fixed") and previous.values(f.var):
                f.values = previous.values(f.var)
    el.append(form.to_element())
    return el


def _command_element(node: str, sid: str, status: str, lang: str | None) -> etree._Element:
    el = builders.element(ns.COMMANDS, "command", node=node, sessionid=sid, status=status)
    el.set(ns.XML_LANG, lang or "en")  # XEP-0050 §3.7: say which locale the session uses
    return el


def _note(parent: etree._Element, note: Note) -> None:
    etree.SubElement(parent, ns.clark(ns.COMMANDS, "note"), type=note.type).text = note.text


def _trio_clock() -> float:
    import trio

    return trio.current_time()


class CommandsModule(Module):
    """Serves the server domain's command registry; other modules add commands to it."""

    name = "commands"
    features = (ns.COMMANDS,)

    def __init__(self, *, router: Router, disco: DiscoModule, primary_domain: str) -> None:
        super().__init__()
        self.router = router
        self.disco = disco
        self.primary_domain = primary_domain
        self.registry = CommandRegistry()

    def setup(self) -> None:
        self.router.add_iq_handler("host", "set", COMMAND, self.registry.handle)
        info_nodes = self.disco.host_info_nodes
        self.disco.host_items_nodes[ns.COMMANDS] = self._items
        info_nodes[ns.COMMANDS] = self._info
        self.registry.on_added.append(lambda c: info_nodes.__setitem__(c.node, self._info))

    def add(self, command: Command) -> Command:
        """Offer ``command`` on the server domain."""
        return self.registry.add(command)

    async def _items(self, st: Stanza) -> etree._Element:
        domain = st.to.domain if st.to is not None else self.primary_domain
        return self.registry.items_element(domain, st.from_)

    async def _info(self, st: Stanza) -> etree._Element:
        return self.registry.info_element(st.element[0].get("node") or "", st.from_)
