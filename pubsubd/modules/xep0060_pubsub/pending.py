"""XEP-0060 §8.7 "get-pending": an owner asks for the pending subscription requests of its
nodes through an XEP-0050 ad-hoc command on the service JID.

Stage one offers the owner's nodes that have requests waiting; submitting one of them makes
the service send one §8.6 approval form per pending request, which the owner answers exactly
as it answers the forms sent at subscription time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from pubsubd import ns
from pubsubd.errors import Condition, StanzaError
from pubsubd.modules.xep0050_commands import Command, CommandSession, Done, Note, Stage
from pubsubd.pubsub import (
    Affiliation,
    Notification,
    NotificationKind,
    PubSubError,
    PubSubService,
    Recipient,
)
from pubsubd.pubsub.model import MessageType
from pubsubd.xml.forms import Field, Form, Option

from .errors import to_stanza_error

GET_PENDING = f"{ns.PUBSUB}#get-pending"

Send = Callable[[Sequence[Notification]], Awaitable[None]]


def get_pending_command(service: PubSubService, send: Send) -> Command:
    """The command; ``send`` delivers the approval forms (the component's sender)."""

    async def choose_node(session: CommandSession, _: Form | None) -> Stage | Done:
        requester = str(session.requester)
        owned = [
            node
            for node, affiliation in (await service.affiliations(requester)).items()
            if affiliation is Affiliation.OWNER
        ]
        if not owned:
            # §8.7.3.3: no subscription approval privileges anywhere on the service.
            raise StanzaError(Condition.FORBIDDEN, "you own no node of this service")
        # §8.7.2: the service MAY offer only the nodes that have requests pending.
        pending = await service.pending_nodes(requester)
        if not pending:
            return Done([Note("No subscription request is pending.")])
        form = Form.with_form_type(
            "form",
            ns.PUBSUB_SUBSCRIBE_AUTHORIZATION,
            [
                Field(
                    "pubsub#node",
                    "list-single",
                    label="Node with pending subscription requests",
                    options=[Option(node) for node in pending],
                    required=True,
                )
            ],
            title="Pending subscription requests",
        )
        return Stage(form, final=True)

    async def send_forms(session: CommandSession, form: Form | None) -> Stage | Done:
        requester = str(session.requester)
        node = (form.value("pubsub#node") if form is not None else None) or ""
        try:
            pending = await service.pending_subscriptions(requester, node)
        except PubSubError as error:
            raise to_stanza_error(error) from None  # §8.7.3.3 forbidden, §8.7.3.4 not found
        # §8.7.4: one approval message (§8.6.1) per pending request, to the requesting owner.
        await send(
            [
                Notification(
                    NotificationKind.APPROVAL_REQUEST,
                    service.service,
                    node,
                    (Recipient(requester, MessageType.NORMAL),),
                    subscription=sub,
                )
                for sub in pending
            ]
        )
        return Done([Note(f"{len(pending)} approval request(s) sent for {node}.")])

    return Command(GET_PENDING, "Get pending subscription requests", [choose_node, send_forms])
