"""Who may do what on a node: the XEP-0060 §4.1 capability table plus the access models.

Everything is decided by :func:`may` / :func:`require`, so each use case asks one question and
gets back either permission or the exact error XEP-0060 prescribes for the refusal.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from .errors import PubSubError
from .model import AccessModel, Affiliation, Node, PublishModel


class ContactsView(Protocol):
    """Roster facts the server provides, seen from the owner's roster."""

    def subscription(self, owner_bare: str, contact_bare: str) -> str:
        """ "none", "to", "from" or "both" (RFC 6121 §2.1.2.5)."""
        ...

    def groups(self, owner_bare: str, contact_bare: str) -> frozenset[str]: ...


class Action(StrEnum):
    SUBSCRIBE = "subscribe"
    RETRIEVE_ITEMS = "retrieve-items"
    PUBLISH = "publish"
    RETRACT_OWN = "retract-own"
    RETRACT_ANY = "retract-any"
    PURGE = "purge"
    CONFIGURE = "configure"
    DELETE = "delete"
    MANAGE_SUBSCRIPTIONS = "manage-subscriptions"
    MANAGE_AFFILIATIONS = "manage-affiliations"
    GET_PENDING = "get-pending"


_OWNER_ONLY = {
    Action.CONFIGURE,
    Action.DELETE,
    Action.MANAGE_SUBSCRIPTIONS,
    Action.MANAGE_AFFILIATIONS,
    Action.GET_PENDING,
}


def _row(*allowed: Action) -> dict[Action, bool]:
    return {action: action in allowed for action in Action}


# XEP-0060 §4.1, Table 1. A publisher may remove any item (the "*" note allows it); a
# publish-only entity only its own items, as the note recommends.
CAPABILITIES: dict[Affiliation, dict[Action, bool]] = {
    Affiliation.OWNER: _row(*Action),
    Affiliation.PUBLISHER: _row(
        Action.SUBSCRIBE,
        Action.RETRIEVE_ITEMS,
        Action.PUBLISH,
        Action.RETRACT_OWN,
        Action.RETRACT_ANY,
        Action.PURGE,
    ),
    Affiliation.PUBLISH_ONLY: _row(Action.PUBLISH, Action.RETRACT_OWN),
    Affiliation.MEMBER: _row(Action.SUBSCRIBE, Action.RETRIEVE_ITEMS),
    Affiliation.NONE: _row(Action.SUBSCRIBE, Action.RETRIEVE_ITEMS),
    Affiliation.OUTCAST: _row(),
}
# "None" may not retrieve items by Table 1 except where the access model lets anyone in; the
# access-model check below is what grants or refuses it.


@dataclass(frozen=True, slots=True)
class AccessContext:
    """Facts about the requester that the access decision needs."""

    affiliation: Affiliation
    owners: frozenset[str]
    contacts: ContactsView
    subscribed: bool = False
    """The requester holds an approved subscription (authorize model, publish_model)."""
    superuser: bool = False
    """A service administrator, or the service itself (e.g. the feed engine)."""


def require(node: Node, jid: str, action: Action, context: AccessContext) -> None:
    """Raise the XEP-0060 error for ``action`` being refused to ``jid``; return if allowed."""
    if context.superuser:
        return
    affiliation = context.affiliation
    if affiliation is Affiliation.OUTCAST:
        # §6.1.3.8 / §6.5.9.10 blocked; §7.1.3.1 insufficient privileges.
        raise PubSubError("forbidden", text="outcast")
    if action is Action.PUBLISH:
        _require_publish(node, context)
        return
    if not CAPABILITIES[affiliation][action]:
        raise PubSubError("forbidden", text=f"{affiliation} may not {action}")
    if action in (Action.SUBSCRIBE, Action.RETRIEVE_ITEMS):
        _require_access_model(node, jid, action, context)


def may(node: Node, jid: str, action: Action, context: AccessContext) -> bool:
    try:
        require(node, jid, action, context)
    except PubSubError:
        return False
    return True


def _require_publish(node: Node, context: AccessContext) -> None:
    # XEP-0060 §7.1.3.1: insufficient privileges to publish → <forbidden/>.
    if CAPABILITIES[context.affiliation][Action.PUBLISH]:
        return
    model = node.config.publish_model
    if model is PublishModel.OPEN:
        return
    if model is PublishModel.SUBSCRIBERS and context.subscribed:
        return
    raise PubSubError("forbidden", text="not a publisher")


def _require_access_model(node: Node, jid: str, action: Action, context: AccessContext) -> None:
    if context.affiliation in (Affiliation.OWNER, Affiliation.PUBLISHER, Affiliation.MEMBER):
        # Affiliated entities are on the whitelist/roster by definition of their role.
        return
    model = node.config.access_model
    contact = jid.split("/", 1)[0]
    if model is AccessModel.OPEN:
        return
    if model is AccessModel.PRESENCE:
        if any(
            context.contacts.subscription(owner, contact) in ("from", "both")
            for owner in context.owners
        ):
            return
        # §6.1.3.2 / §6.5.9.6
        raise PubSubError("not-authorized", "presence-subscription-required")
    if model is AccessModel.ROSTER:
        allowed = node.config.roster_groups_allowed
        if any(context.contacts.groups(owner, contact) & allowed for owner in context.owners):
            return
        # §6.1.3.3 / §6.5.9.7
        raise PubSubError("not-authorized", "not-in-roster-group")
    if model is AccessModel.AUTHORIZE:
        if action is Action.SUBSCRIBE or context.subscribed:
            return  # a subscription request is allowed; it becomes pending (§6.1.4)
        # §6.5.9.3: only subscribers may retrieve items of an authorize node.
        raise PubSubError("not-authorized", "not-subscribed")
    # §6.1.3.4 / §6.5.9.8
    raise PubSubError("not-allowed", "closed-node")
