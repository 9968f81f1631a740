"""What the feed service needs of the XEP-0060 component: its core service and its extension
points (handlers it calls, renderers it consults), as a Protocol the component satisfies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from pubsubd.core.router import Stanza
from pubsubd.modules.xep0050_commands import CommandRegistry
from pubsubd.modules.xep0060_pubsub.notify import NotificationSender
from pubsubd.pubsub import Notification, PubSubService


class PubSubComponent(Protocol):
    """What the feed service needs of the XEP-0060 component (``PubSubComponent``)."""

    service: PubSubService
    missing_node_handlers: list[Callable[[str, str], Awaitable[bool]]]
    unsubscribed_handlers: list[Callable[[str, str, int], Awaitable[None]]]
    message_handlers: list[Callable[[Stanza], Awaitable[bool]]]
    node_metadata_providers: list[Callable[[str], Awaitable[dict[str, list[str]]]]]
    contact_handlers: list[Callable[[Stanza], Awaitable[bool]]]
    sender: NotificationSender
    commands: CommandRegistry  # XEP-0050 on the service JID

    async def send_notifications(self, notifications: Sequence[Notification]) -> Any: ...


__all__ = ["PubSubComponent"]
