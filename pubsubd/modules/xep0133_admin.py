"""XEP-0133 Service Administration, for the JIDs in ``config.admins`` only.

The work itself lives in :class:`AdminActions`, plain async methods that both front ends call:
the ad-hoc commands of the server domain (XEP-0050 forms, registered here) and the local control
socket of ``pubsubd admin`` (operations registered in :class:`ControlOps`). Everyone but an
admin sees none of the commands and is answered ``<forbidden/>`` (XEP-0133 §5, §6).

The message of the day is kept in the database and sent to each session when it is bound.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import trio
from lxml import etree

from pubsubd import ns
from pubsubd.config import Config
from pubsubd.core.control_ops import ControlOps
from pubsubd.core.hooks import HookBus
from pubsubd.core.lifecycle import ServerLifecycle
from pubsubd.core.module import Module
from pubsubd.core.session import Session, SessionRegistry
from pubsubd.errors import Condition, StanzaError, StreamCondition, StreamError
from pubsubd.jid import JID, InvalidJID
from pubsubd.modules.control_socket import ControlError
from pubsubd.modules.rfc6121_roster import item_element
from pubsubd.modules.xep0050_commands import (
    Command,
    CommandSession,
    CommandsModule,
    Done,
    Note,
    Stage,
    command_error,
)
from pubsubd.storage.accounts import AccountExists, AccountStore
from pubsubd.storage.interfaces import ImStore, MotdStore
from pubsubd.xml import builders
from pubsubd.xml.forms import Field, Form, Option

if TYPE_CHECKING:
    from pubsubd.net.c2s import C2SConnection

NODE = ns.ADMIN + "#"  # XEP-0133 §4: every node is "http://jabber.org/protocol/admin#<name>"
DELAYS = ("0", "30", "60", "90", "120", "180", "240", "300")  # seconds; "0" is our "now"


def xep0082(timestamp: float | None) -> str | None:
    """XEP-0082 DateTime in UTC, e.g. 2003-12-19T17:58:35Z."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def notice(to: JID, from_: str, subject: str, body: str,
           type_: str | None = None) -> etree._Element:
    """A server message with a subject, as announcements and the MOTD are sent."""
    msg = builders.message(to=str(to), from_=from_, type_=type_)
    etree.SubElement(msg, ns.C_SUBJECT).text = subject
    etree.SubElement(msg, ns.C_BODY).text = body
    return msg


class AdminActions:
    """What an administrator can do, independent of how the request arrived."""

    def __init__(self, module: AdminModule) -> None:
        self.module = module
        self.log = module.log

    # --- accounts ------------------------------------------------------------------------

    def local_user(self, text: str) -> JID:
        """A user JID of a served domain (bare); StanzaError otherwise."""
        try:
            jid = JID.parse(text.strip())
        except InvalidJID as exc:
            raise StanzaError(Condition.JID_MALFORMED, f"{text}: {exc}") from None
        if jid.local is None or jid.domain not in self.module.config.domains:
            raise StanzaError(Condition.NOT_ACCEPTABLE, f"{text} is not a user of this server")
        return jid

    async def add_user(self, jid: JID, password: str) -> None:
        if not password:
            raise command_error(Condition.BAD_REQUEST, "bad-payload", "the password is empty")
        try:
            await self.module.accounts.create(jid.local or "", jid.domain, password)
        except AccountExists:
            raise StanzaError(Condition.CONFLICT, f"{jid.bare} already exists") from None
        self.log.info("admin: account %s created", jid.bare)

    async def delete_user(self, jid: JID) -> bool:
        if not await self.module.accounts.delete(jid.local or "", jid.domain):
            return False
        await self.module.hooks.notify("account/deleted", jid.bare)
        # XEP-0133 §4.2: deleting a user SHOULD end its sessions.
        self.end_sessions(jid.bare, StreamCondition.NOT_AUTHORIZED, "account removed")
        self.log.info("admin: account %s deleted", jid.bare)
        return True

    async def set_enabled(self, jid: JID, enabled: bool) -> bool:
        if not await self.module.accounts.set_enabled(jid.local or "", jid.domain, enabled):
            return False
        if not enabled:
            # XEP-0133 §4.3: disabling MUST end the user's sessions; login is refused after.
            self.end_sessions(jid.bare, StreamCondition.POLICY_VIOLATION, "account disabled")
        self.log.info("admin: account %s %s", jid.bare, "enabled" if enabled else "disabled")
        return True

    async def change_password(self, jid: JID, password: str) -> bool:
        if not password:
            raise command_error(Condition.BAD_REQUEST, "bad-payload", "the password is empty")
        changed = await self.module.accounts.set_password(jid.local or "", jid.domain, password)
        if changed:
            self.log.info("admin: password of %s changed", jid.bare)
        return changed

    def end_sessions(self, jid: JID, condition: StreamCondition = StreamCondition.POLICY_VIOLATION,
                     text: str = "session ended by an administrator") -> int:
        """Close the sessions of a bare JID (all resources) or of one full JID."""
        sessions = self.module.sessions
        targets = sessions.resources(jid) if jid.resource is None else [
            s for s in [sessions.get(jid)] if s is not None]
        for session in targets:
            session.close(StreamError(condition, text))
        return len(targets)

    # --- who is here ---------------------------------------------------------------------

    def online_users(self) -> list[JID]:
        """XEP-0133 §4.15: users with at least one connected resource."""
        return sorted(self.module.sessions.users(), key=str)

    def active_users(self) -> list[JID]:
        """Online users with a resource that is available and not away, xa or dnd."""
        return sorted({s.jid.bare for s in self.module.sessions
                       if s.presence.available and s.presence.show in ("online", "chat")}, key=str)

    def idle_users(self) -> list[JID]:
        active = set(self.active_users())
        return [u for u in self.online_users() if u not in active]

    def peers_of(self, bare: JID) -> list[str]:
        """Client IP addresses of the user's connections."""
        return sorted({conn.peer for conn in self.module.connections
                       if conn.session is not None
                       and conn.session.jid.bare == bare})

    def roster_of(self, bare: JID) -> etree._Element | None:
        """The user's roster as a jabber:iq:roster query."""
        store = self.module.rosters
        query = builders.element(ns.ROSTER, "query")
        for item in sorted(store.roster(bare).values(), key=lambda i: str(i.contact)):
            query.append(item_element(item))
        return query

    async def counts(self) -> dict[str, int]:
        accounts = await self.module.accounts.list()
        return {
            "registered": len(accounts),
            "disabled": sum(1 for a in accounts if not a.enabled),
            "online": len(self.online_users()),
            "active": len(self.active_users()),
            "idle": len(self.idle_users()),
            "sessions": len(self.module.sessions),
        }

    # --- messages to users ---------------------------------------------------------------

    def announce(self, text: str) -> int:
        """XEP-0133 §4.23: a headline to every connected session; how many got it."""
        domain = self.module.config.primary_domain
        sent = 0
        for session in list(self.module.sessions):
            sent += session.send(notice(session.jid, domain, "Announcement", text, "headline"))
        self.log.info("admin: announcement sent to %d sessions", sent)
        return sent

    @property
    def motd(self) -> str | None:
        return self.module.motd

    async def set_motd(self, text: str | None) -> None:
        await self.module.motd_store.set(text)
        self.module.motd = text
        self.log.info("admin: message of the day %s", "deleted" if text is None else "set")

    # --- the service itself ----------------------------------------------------------------

    def stop(self, *, restart: bool, delay: float, announcement: str | None) -> None:
        """Graceful shutdown (or restart) after ``delay`` seconds, announced first if asked."""
        if announcement:
            self.announce(announcement)
        self.log.warning("admin: %s in %g s", "restart" if restart else "shutdown", delay)
        self.module.schedule(delay, restart)


AdminStep = Callable[[CommandSession, Form | None], Awaitable[Stage | Done]]


class AdminModule(Module):
    name = "admin"

    def __init__(self, *, config: Config, accounts: AccountStore, hooks: HookBus,
                 sessions: SessionRegistry, connections: Collection[C2SConnection],
                 rosters: ImStore, motd: MotdStore, commands: CommandsModule,
                 control_ops: ControlOps, lifecycle: ServerLifecycle) -> None:
        super().__init__()
        self.config = config
        self.accounts = accounts
        self.hooks = hooks
        self.sessions = sessions
        self.connections = connections  # every open client stream, bound or not (live)
        self.rosters = rosters
        self.motd_store = motd
        self.commands = commands
        self.control_ops = control_ops
        self.lifecycle = lifecycle

    def setup(self) -> None:
        self.motd: str | None = self.motd_store.load()
        self.admins = frozenset(JID.parse(a).bare for a in self.config.admins)
        self.actions = AdminActions(self)
        self._nursery: trio.Nursery | None = None
        self.hooks.on("session/bound", self._send_motd)
        for command in self._commands():
            self.commands.add(command)
        for name, op in self._control_ops().items():
            self.control_ops.register(name, op)

    def is_admin(self, jid: JID) -> bool:
        return jid.bare in self.admins

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await trio.sleep_forever()

    def schedule(self, delay: float, restart: bool) -> None:
        async def later() -> None:
            await trio.sleep(delay)
            if restart:
                self.lifecycle.request_restart()
            else:
                self.lifecycle.shutdown()

        if self._nursery is None:
            raise StanzaError(Condition.INTERNAL_SERVER_ERROR, "the server is not running yet")
        self._nursery.start_soon(later)

    async def _send_motd(self, session: Session) -> bool:
        if self.motd:
            domain = self.config.primary_domain
            session.send(notice(session.jid, domain, "Message of the Day", self.motd))
        return False

    # --- XEP-0133 commands ------------------------------------------------------------------

    def _command(self, name: str, label: str, *steps: AdminStep) -> Command:
        return Command(NODE + name, label, list(steps), allowed=self.is_admin)

    def _form_command(self, name: str, label: str, title: str, fields: list[Field],
                      run: Callable[[Form], Awaitable[Done]],
                      fill: Callable[[], list[Field]] | None = None) -> Command:
        """A command of one form, then completion (the shape of most XEP-0133 use cases)."""

        async def show(session: CommandSession, _: Form | None) -> Stage:
            shown = fill() if fill is not None else fields
            form = Form.with_form_type("form", ns.ADMIN, shown, title=title,
                                       instructions=[f"Fill out this form to {title[0].lower()}"
                                                     f"{title[1:]}."])
            return Stage(form)

        async def submit(session: CommandSession, form: Form | None) -> Done:
            assert form is not None
            return await run(form)

        return self._command(name, label, show, submit)

    def _at_once(self, name: str, label: str, run: Callable[[], Awaitable[Done]]) -> Command:
        async def step(session: CommandSession, _: Form | None) -> Done:
            return await run()

        return self._command(name, label, step)

    def _commands(self) -> list[Command]:
        a = self.actions
        one = Field("accountjid", "jid-single", "The Jabber ID", required=True)
        many = Field("accountjids", "jid-multi", "The Jabber ID(s)", required=True)
        password = Field("password", "text-private", "The password", required=True)
        verify = Field("password-verify", "text-private", "Retype password", required=True)
        announcement = Field("announcement", "text-multi", "Announcement", required=True)
        motd = Field("motd", "text-multi", "Message of the Day", required=True)
        delay = Field("delay", "list-single", "Time delay before stopping", values=["0"],
                      options=[Option(d, "now" if d == "0" else f"{d} seconds") for d in DELAYS])
        note = Field("announcement", "text-multi", "Announcement")

        async def add_user(form: Form) -> Done:
            jid = a.local_user(form.value("accountjid") or "")
            if form.value("password") != form.value("password-verify"):
                raise command_error(Condition.BAD_REQUEST, "bad-payload",
                                    "the passwords do not match")
            await a.add_user(jid, form.value("password") or "")
            return Done([Note(f"{jid.bare} created")])

        def each(verb: str, act: Callable[[JID], Awaitable[bool]]) -> Callable[
                [Form], Awaitable[Done]]:
            async def run(form: Form) -> Done:
                notes = []
                for text in form.values("accountjids"):
                    jid = a.local_user(text)
                    ok = await act(jid.bare)
                    notes.append(Note(f"{jid.bare} {verb}") if ok else
                                 Note(f"{jid.bare}: no such user", "error"))
                return Done(notes)

            return run

        async def end_session(form: Form) -> Done:
            closed = sum(a.end_sessions(a.local_user(t)) for t in form.values("accountjids"))
            return Done([Note(f"{closed} session(s) ended")])

        async def change_password(form: Form) -> Done:
            jid = a.local_user(form.value("accountjid") or "")
            if not await a.change_password(jid, form.value("password") or ""):
                raise StanzaError(Condition.ITEM_NOT_FOUND, f"{jid.bare}: no such user")
            return Done([Note(f"password of {jid.bare} changed")])

        async def get_roster(form: Form) -> Done:
            result = Form.with_form_type("result", ns.ADMIN, [
                Field("accountjids", "jid-multi", values=form.values("accountjids"))])
            x = result.to_element()
            notes = []
            for text in form.values("accountjids"):
                roster = a.roster_of(a.local_user(text).bare)
                if roster is None:
                    notes.append(Note("rosters are not kept by this server", "warn"))
                    break
                x.append(roster)  # XEP-0133 §4.8 Example 28: the roster inside the form
            return Done(notes, payload=[x])

        async def last_login(form: Form) -> Done:
            rows = []
            for text in form.values("accountjids"):
                jid = a.local_user(text)
                account = await self.accounts.get(jid.local or "", jid.domain)
                if account is None:
                    raise StanzaError(Condition.ITEM_NOT_FOUND, f"{jid.bare}: no such user")
                rows.append((str(jid.bare), xep0082(account.last_login) or "never"))
            fields = [Field("accountjids", "jid-multi", values=[r[0] for r in rows]),
                      Field("lastlogin", "text-single", "Last login", values=[r[1] for r in rows])]
            if len(rows) > 1:  # one value per account, in the order of accountjids
                fields[1] = Field("lastlogin", "text-multi", "Last login",
                                  values=[f"{j} {t}" for j, t in rows])
            return Done(form=Form.with_form_type("result", ns.ADMIN, fields))

        async def user_stats(form: Form) -> Done:
            jid = a.local_user(form.value("accountjid") or "").bare
            if await self.accounts.get(jid.local or "", jid.domain) is None:
                raise StanzaError(Condition.ITEM_NOT_FOUND, f"{jid}: no such user")
            roster = a.roster_of(jid)
            resources = [s.jid.resource or "" for s in self.sessions.resources(jid)]
            fields = [Field("onlineresources", "text-multi", "Online resources",
                            values=sorted(resources)),
                      Field("ipaddresses", "text-multi", "IP addresses", values=a.peers_of(jid))]
            if roster is not None:
                fields.append(Field("rostersize", "text-single", "Roster size",
                                    values=[str(len(roster))]))
            return Done(form=Form.with_form_type("result", ns.ADMIN, fields))

        def number(var: str, label: str, key: str) -> Callable[[], Awaitable[Done]]:
            async def run() -> Done:
                value = (await a.counts())[key]
                return Done(form=Form.with_form_type("result", ns.ADMIN, [
                    Field(var, "text-single", label, values=[str(value)])]))

            return run

        def listing(var: str, label: str, users: Callable[[], Awaitable[list[JID]]]) -> Callable[
                [], Awaitable[Done]]:
            async def run() -> Done:
                jids = [str(j) for j in await users()]
                return Done(form=Form.with_form_type("result", ns.ADMIN, [
                    Field(var, "jid-multi", label, values=jids)]))

            return run

        async def registered() -> list[JID]:
            return [JID.parse(acc.jid) for acc in await self.accounts.list()]

        async def disabled() -> list[JID]:
            return [JID.parse(acc.jid) for acc in await self.accounts.list()
                    if not acc.enabled]

        async def online() -> list[JID]:
            return a.online_users()

        async def active() -> list[JID]:
            return a.active_users()

        async def idle() -> list[JID]:
            return a.idle_users()

        async def announce(form: Form) -> Done:
            sent = a.announce("\n".join(form.values("announcement")))
            return Done([Note(f"sent to {sent} session(s)")])

        async def set_motd(form: Form) -> Done:
            await a.set_motd("\n".join(form.values("motd")))
            return Done([Note("message of the day set")])

        def current_motd() -> list[Field]:
            return [Field("motd", "text-multi", "Message of the Day", required=True,
                          values=(a.motd or "").splitlines())]

        async def delete_motd() -> Done:
            await a.set_motd(None)
            return Done([Note("message of the day deleted")])

        def stopping(restart: bool) -> Callable[[Form], Awaitable[Done]]:
            async def run(form: Form) -> Done:
                text = "\n".join(form.values("announcement")) or None
                a.stop(restart=restart, delay=float(form.value("delay") or "0"),
                       announcement=text)
                return Done([Note("restarting" if restart else "shutting down")])

            return run

        return [
            self._form_command("add-user", "Add User", "Add a user",
                               [one, password, verify], add_user),
            self._form_command("delete-user", "Delete User", "Delete users", [many],
                               each("deleted", a.delete_user)),
            self._form_command("disable-user", "Disable User", "Disable users", [many],
                               each("disabled", lambda j: a.set_enabled(j, False))),
            self._form_command("reenable-user", "Re-Enable User", "Re-enable users", [many],
                               each("re-enabled", lambda j: a.set_enabled(j, True))),
            self._form_command("end-user-session", "End User Session", "End user sessions",
                               [many], end_session),
            self._form_command("change-user-password", "Change User Password",
                               "Change a user's password", [one, password], change_password),
            self._form_command("get-user-roster", "Get User Roster", "Get users' rosters",
                               [many], get_roster),
            self._form_command("get-user-lastlogin", "Get User Last Login Time",
                               "Get users' last login time", [many], last_login),
            self._form_command("user-stats", "Get User Statistics", "Get user statistics",
                               [one], user_stats),
            self._at_once("get-registered-users-num", "Get Number of Registered Users",
                          number("registeredusersnum", "The number of registered users",
                                 "registered")),
            self._at_once("get-disabled-users-num", "Get Number of Disabled Users",
                          number("disabledusersnum", "The number of disabled users", "disabled")),
            self._at_once("get-online-users-num", "Get Number of Online Users",
                          number("onlineusersnum", "The number of online users", "online")),
            self._at_once("get-active-users-num", "Get Number of Active Users",
                          number("activeusersnum", "The number of active users", "active")),
            self._at_once("get-idle-users-num", "Get Number of Idle Users",
                          number("idleusersnum", "The number of idle users", "idle")),
            self._at_once("get-registered-users-list", "Get List of Registered Users",
                          listing("registereduserjids", "The list of all users", registered)),
            self._at_once("get-disabled-users-list", "Get List of Disabled Users",
                          listing("disableduserjids", "The list of disabled users", disabled)),
            self._at_once("get-online-users-list", "Get List of Online Users",
                          listing("onlineuserjids", "The list of all online users", online)),
            self._at_once("get-active-users", "Get List of Active Users",
                          listing("activeuserjids", "The list of active users", active)),
            self._at_once("get-idle-users", "Get List of Idle Users",
                          listing("idleuserjids", "The list of idle users", idle)),
            self._form_command("announce", "Send Announcement to Online Users",
                               "Make an announcement to all online users", [announcement],
                               announce),
            self._form_command("set-motd", "Set Message of the Day",
                               "Set the message of the day", [motd], set_motd),
            self._form_command("edit-motd", "Edit Message of the Day",
                               "Edit the message of the day", [motd], set_motd,
                               fill=current_motd),
            self._at_once("delete-motd", "Delete Message of the Day", delete_motd),
            self._form_command("restart", "Restart Service", "Restart the service",
                               [delay, note], stopping(True)),
            self._form_command("shutdown", "Shut Down Service", "Shut down the service",
                               [delay, note], stopping(False)),
        ]

    # --- control socket operations -------------------------------------------------------

    def _control_ops(self) -> dict[str, Callable[[dict[str, Any]], Awaitable[Any]]]:
        a = self.actions

        def user(args: dict[str, Any]) -> JID:
            text = args.get("jid")
            if not isinstance(text, str) or not text:
                raise ControlError("give the user's JID (jid=user@domain)")
            try:
                return a.local_user(text)
            except StanzaError as exc:
                raise ControlError(exc.text or exc.condition.value) from None

        async def users(args: dict[str, Any]) -> list[dict[str, Any]]:
            """Accounts, with their state and last login."""
            rows = []
            for acc in await self.accounts.list(args.get("domain")):
                bare = JID.parse(acc.jid)
                rows.append({"jid": acc.jid, "enabled": acc.enabled,
                             "online": len(self.sessions.resources(bare)),
                             "last_login": xep0082(acc.last_login) or "never"})
            return rows

        async def online(args: dict[str, Any]) -> list[dict[str, Any]]:
            """Bound sessions, with their presence; a hibernated one (XEP-0198 §5: connection
            lost, waiting to be resumed) is marked as such and has no address."""
            peers = {conn.session.jid: conn.peer for conn in self.connections
                     if conn.session is not None}
            return [{"jid": str(s.jid),
                     "state": "hibernated" if s.hibernated else "connected",
                     "available": s.presence.available,
                     "show": s.presence.show if s.presence.available else "-",
                     "priority": s.presence.priority, "address": peers.get(s.jid, "")}
                    for s in sorted(self.sessions, key=lambda s: str(s.jid))]

        async def stats(args: dict[str, Any]) -> dict[str, Any]:
            """Uptime and user counts."""
            uptime = trio.current_time() - self.lifecycle.started_at
            return {"domains": ", ".join(self.config.domains),
                    "uptime_seconds": round(uptime), **(await a.counts()),
                    "motd": "set" if a.motd else "none"}

        async def announce(args: dict[str, Any]) -> dict[str, int]:
            """Send a headline to every connected session (text=...)."""
            text = args.get("text")
            if not isinstance(text, str) or not text.strip():
                raise ControlError("give the announcement text")
            return {"sent": a.announce(text)}

        async def kick(args: dict[str, Any]) -> dict[str, int]:
            """End a user's sessions (jid=user@domain or a full JID)."""
            return {"closed": a.end_sessions(user(args))}

        async def disable(args: dict[str, Any]) -> dict[str, str]:
            """Disable an account and end its sessions (jid=...)."""
            jid = user(args)
            if not await a.set_enabled(jid.bare, False):
                raise ControlError(f"no such user {jid.bare}")
            return {"disabled": str(jid.bare)}

        async def enable(args: dict[str, Any]) -> dict[str, str]:
            """Re-enable a disabled account (jid=...)."""
            jid = user(args)
            if not await a.set_enabled(jid.bare, True):
                raise ControlError(f"no such user {jid.bare}")
            return {"enabled": str(jid.bare)}

        async def delete(args: dict[str, Any]) -> dict[str, str]:
            """Delete an account and end its sessions (jid=...)."""
            jid = user(args)
            if not await a.delete_user(jid.bare):
                raise ControlError(f"no such user {jid.bare}")
            return {"deleted": str(jid.bare)}

        async def motd(args: dict[str, Any]) -> dict[str, str | None]:
            """Show, set (text=...) or delete (delete=true) the message of the day."""
            if args.get("delete"):
                await a.set_motd(None)
            elif isinstance(args.get("text"), str) and args["text"]:
                await a.set_motd(args["text"])
            return {"motd": a.motd}

        def stopping(restart: bool) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
            async def run(args: dict[str, Any]) -> dict[str, Any]:
                try:
                    delay = float(args.get("delay", 0))
                except (TypeError, ValueError):
                    raise ControlError("delay must be a number of seconds") from None
                text = args.get("text") if isinstance(args.get("text"), str) else None
                a.stop(restart=restart, delay=delay, announcement=text)
                return {"restart" if restart else "shutdown": f"in {delay:g} s"}

            run.__doc__ = ("Restart" if restart else "Stop") + \
                " the server gracefully (delay=seconds, text=announcement)."
            return run

        return {"users": users, "online": online, "stats": stats, "announce": announce,
                "kick": kick, "disable": disable, "enable": enable, "delete": delete,
                "motd": motd, "shutdown": stopping(False), "restart": stopping(True)}

