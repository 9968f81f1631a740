"""The element names and conditions the parts of the MUC component share."""

from __future__ import annotations

from pubsubd import ns

MUC_X = ns.clark(ns.MUC, "x")
USER_X = ns.clark(ns.MUC_USER, "x")
ADMIN_QUERY = ns.clark(ns.MUC_ADMIN, "query")
OWNER_QUERY = ns.clark(ns.MUC_OWNER, "query")
REGISTER_QUERY = ns.clark(ns.REGISTER, "query")
MAM_QUERY = ns.clark(ns.MAM, "query")
MODERATE = ns.clark(ns.MESSAGE_MODERATE, "moderate")
DISCO_INFO = ns.clark(ns.DISCO_INFO, "query")
DISCO_ITEMS = ns.clark(ns.DISCO_ITEMS, "query")
PING = ns.clark(ns.PING, "ping")
SUBJECT = ns.clark(ns.CLIENT, "subject")
BODY = ns.clark(ns.CLIENT, "body")
X_DATA = ns.clark(ns.DATA_FORMS, "x")
ROOMUSER_NODE = "x-roomuser-item"  # §7.12
# XEP-0410 §3.4 / RFC 6120 §8.3.3: errors that say the occupant's session is gone.
GONE = frozenset({"gone", "item-not-found", "recipient-unavailable", "redirect",
                   "remote-server-not-found", "remote-server-timeout", "service-unavailable",
                   "jid-malformed"})


def muc_user(local: str) -> str:
    """The clark name of a muc#user element."""
    return ns.clark(ns.MUC_USER, local)
