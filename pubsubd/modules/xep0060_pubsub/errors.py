"""The one table from core :class:`PubSubError` values to XMPP stanza errors.

The core names an RFC 6120 condition and an optional XEP-0060 §11 application condition; this
module adds the ``<… xmlns='http://jabber.org/protocol/pubsub#errors'/>`` child (with its
``feature`` attribute for ``<unsupported/>``) and the error ``type`` the examples of XEP-0060
prescribe where it differs from RFC 6120's usual one.
"""

from __future__ import annotations

from lxml import etree

from pubsubd import ns
from pubsubd.core.router import Router, Stanza
from pubsubd.errors import DEFAULT_TYPE, Condition, StanzaError
from pubsubd.pubsub import PubSubError
from pubsubd.xml import builders

# (stanza condition, pubsub condition or None) → error type, where XEP-0060 differs from the
# RFC 6120 default of the condition.
ERROR_TYPES: dict[tuple[str, str | None], str] = {
    ("policy-violation", "too-many-subscriptions"): "wait",  # §6.1.3.9
    ("unexpected-request", "not-subscribed"): "cancel",  # §6.2.3.2
    ("unexpected-request", None): "cancel",
    ("gone", None): "modify",  # §6.1.3.13 (node moved, with redirect)
    ("forbidden", None): "auth",  # §6.2.3.3, §7.1.3.1, §8.1.1
    ("not-allowed", "closed-node"): "cancel",  # §6.1.3.6
}


def to_stanza_error(error: PubSubError) -> StanzaError:
    """Translate a core error, keeping its text and any redirect URI (RFC 6120 §8.3.3.5)."""
    try:
        condition = Condition(error.condition)
    except ValueError:
        condition = Condition.UNDEFINED_CONDITION
    app = None
    if error.pubsub_condition:
        app = etree.Element(
            ns.clark(ns.PUBSUB_ERRORS, error.pubsub_condition), nsmap={None: ns.PUBSUB_ERRORS}
        )
        if error.feature:
            app.set("feature", error.feature)  # §11 <unsupported feature='…'/>
    type_ = ERROR_TYPES.get(
        (condition.value, error.pubsub_condition),
        ERROR_TYPES.get((condition.value, None), DEFAULT_TYPE[condition]),
    )
    text = error.text if error.text != error.pubsub_condition else None
    return StanzaError(condition, text, type_=type_, app=app, value=error.redirect)


async def reply_with_payload(
    router: Router, st: Stanza, error: PubSubError, payload: etree._Element
) -> None:
    """An IQ error that carries a payload before ``<error/>`` — XEP-0060 §8.8.2.4 and
    §8.9.2.4 list the refused entries there (RFC 6120 §8.3.1 allows the child)."""
    reply = builders.error_reply(st.element, to_stanza_error(error))
    reply.insert(0, payload)
    if st.to is None:
        reply.attrib.pop("from", None)
    await router.send_to(st.from_, reply, st.origin)
