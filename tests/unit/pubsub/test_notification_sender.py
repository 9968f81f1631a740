"""The notification sender hands each recipient's message to its session's outbox, counts what
it delivered once per notification, and follows a resource to its newest session."""

from __future__ import annotations

import trio

from pubsubd.core.hooks import HookBus
from pubsubd.core.router import Router
from pubsubd.core.session import Session, SessionRegistry
from pubsubd.errors import StreamError
from pubsubd.jid import JID
from pubsubd.modules.xep0060_pubsub.notify import NotificationSender
from pubsubd.pubsub.notifications import Notification, NotificationKind, Recipient

SERVICE = "pubsub.example.org"


class NoAccounts:
    async def exists(self, jid: JID) -> bool:
        return False


def bind(sessions: SessionRegistry, jid: str) -> tuple[Session, trio.MemoryReceiveChannel[bytes]]:
    send, receive = trio.open_memory_channel[bytes](100)
    closed: list[StreamError] = []
    session = Session(JID.parse(jid), send, closed.append)
    sessions.add(session)
    return session, receive


def purge(*addresses: str) -> Notification:
    return Notification(NotificationKind.PURGE, SERVICE, "news",
                        tuple(Recipient(a) for a in addresses))


async def test_messages_reach_the_newest_session_of_a_resource_and_are_counted_once() -> None:
    sessions = SessionRegistry()
    sender = NotificationSender(Router(["example.org"], sessions, HookBus(), NoAccounts()),
                                sessions, HookBus())
    counted: list[tuple[str, int]] = []
    sender.delivered_listeners.append(lambda node, n: counted.append((node, n)))
    first, first_out = bind(sessions, "bob@example.org/desk")
    _, carol_out = bind(sessions, "carol@example.org/phone")
    await sender.send([purge("bob@example.org/desk", "carol@example.org/phone",
                             "dave@example.org/gone")])
    assert b"purge" in first_out.receive_nowait() and b"purge" in carol_out.receive_nowait()
    assert counted == [("news", 2)]
    # Bob's connection ends and he binds the same resource again: the next message goes to
    # the new session, not to the one remembered from before.
    first.closed = True
    sessions.remove(first)
    second, second_out = bind(sessions, "bob@example.org/desk")
    await sender.send([purge("bob@example.org/desk")])
    assert b"purge" in second_out.receive_nowait()
    assert counted == [("news", 2), ("news", 1)]
    # Once he is gone for good (a session is closed, then leaves the registry, as a
    # connection ends it), nothing is sent nor counted.
    second.closed = True
    sessions.remove(second)
    await sender.send([purge("bob@example.org/desk")])
    assert counted == [("news", 2), ("news", 1)]
