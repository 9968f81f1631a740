"""Every namespace URI the server speaks, and the Clark names built from them.

Namespace literals live here only, so a typo is an import error rather than a silent mismatch.
"""

from __future__ import annotations

STREAM = "http://etherx.jabber.org/streams"
CLIENT = "jabber:client"
SERVER = "jabber:server"
COMPONENT = "jabber:component:accept"
XML = "http://www.w3.org/XML/1998/namespace"
STREAMS_ERR = "urn:ietf:params:xml:ns:xmpp-streams"
STANZAS_ERR = "urn:ietf:params:xml:ns:xmpp-stanzas"
TLS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
SASL_CB = "urn:xmpp:sasl-cb:0"  # XEP-0440: the channel-binding types offered
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
SESSION = "urn:ietf:params:xml:ns:xmpp-session"
DIALBACK = "jabber:server:dialback"
DIALBACK_FEATURE = "urn:xmpp:features:dialback"
ROSTERVER_FEATURE = "urn:xmpp:features:rosterver"
PRE_APPROVAL_FEATURE = "urn:xmpp:features:pre-approval"
REGISTER_FEATURE = "http://jabber.org/features/iq-register"

DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
PING = "urn:xmpp:ping"
VERSION = "jabber:iq:version"
TIME = "urn:xmpp:time"
REGISTER = "jabber:iq:register"
ROSTER = "jabber:iq:roster"
DATA_FORMS = "jabber:x:data"
COMMANDS = "http://jabber.org/protocol/commands"
ADMIN = "http://jabber.org/protocol/admin"
DELAY = "urn:xmpp:delay"
OFFLINE = "msgoffline"
BLOCKING = "urn:xmpp:blocking"
BLOCKING_ERRORS = "urn:xmpp:blocking:errors"
CARBONS = "urn:xmpp:carbons:2"
FORWARD = "urn:xmpp:forward:0"
HINTS = "urn:xmpp:hints"
CAPS = "http://jabber.org/protocol/caps"
VCARD = "vcard-temp"
LAST = "jabber:iq:last"
RSM = "http://jabber.org/protocol/rsm"
SHIM = "http://jabber.org/protocol/shim"
PUBSUB = "http://jabber.org/protocol/pubsub"
PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event"
PUBSUB_OWNER = "http://jabber.org/protocol/pubsub#owner"
PUBSUB_ERRORS = "http://jabber.org/protocol/pubsub#errors"
PUBSUB_NODE_CONFIG = "http://jabber.org/protocol/pubsub#node_config"
PUBSUB_META_DATA = "http://jabber.org/protocol/pubsub#meta-data"
PUBSUB_SUBSCRIBE_OPTIONS = "http://jabber.org/protocol/pubsub#subscribe_options"
PUBSUB_SUBSCRIBE_AUTHORIZATION = "http://jabber.org/protocol/pubsub#subscribe_authorization"
PUBSUB_PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
ATOM = "http://www.w3.org/2005/Atom"
# pubsubd's feed health element (HTTP status, fetch times, period, error streak) in
# notifications and feed messages; versioned so it can change without breaking readers.
FEED_STATUS = "urn:pubsubd:feed-status:0"
# pubsubd's ad-hoc commands for operating the syndication side (feeds, nodes, delivery).
SERVICE_ADMIN = "urn:pubsubd:service-admin:0"
SID = "urn:xmpp:sid:0"
MAM = "urn:xmpp:mam:2"
MAM_EXTENDED = "urn:xmpp:mam:2#extended"
PRIVATE = "jabber:iq:private"
SM = "urn:xmpp:sm:3"

# RFC 7395 XMPP over WebSocket: the <open/>/<close/> framing, and XEP-0156 discovery.
FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
XRD = "http://docs.oasis-open.org/ns/xri/xrd-1.0"
ALT_CONNECTIONS_WEBSOCKET = "urn:xmpp:alt-connections:websocket"
ALT_CONNECTIONS_XBOSH = "urn:xmpp:alt-connections:xbosh"  # XEP-0156 §3.2


def clark(namespace: str, local: str) -> str:
    """The lxml tag name ``{namespace}local``."""
    return f"{{{namespace}}}{local}"


STREAM_STREAM = clark(STREAM, "stream")
STREAM_FEATURES = clark(STREAM, "features")
STREAM_ERROR = clark(STREAM, "error")
XML_LANG = clark(XML, "lang")

C_MESSAGE = clark(CLIENT, "message")
C_PRESENCE = clark(CLIENT, "presence")
C_IQ = clark(CLIENT, "iq")
C_ERROR = clark(CLIENT, "error")
C_BODY = clark(CLIENT, "body")
C_SUBJECT = clark(CLIENT, "subject")
C_THREAD = clark(CLIENT, "thread")
C_SHOW = clark(CLIENT, "show")
C_STATUS = clark(CLIENT, "status")
C_PRIORITY = clark(CLIENT, "priority")
STANZA_TAGS = frozenset({C_MESSAGE, C_PRESENCE, C_IQ})

# Server Dialback (XEP-0220) elements on server-to-server streams.
DB_RESULT = clark(DIALBACK, "result")
DB_VERIFY = clark(DIALBACK, "verify")

# XEP-0045 Multi-User Chat
MUC = "http://jabber.org/protocol/muc"
MUC_USER = "http://jabber.org/protocol/muc#user"
MUC_ADMIN = "http://jabber.org/protocol/muc#admin"
MUC_OWNER = "http://jabber.org/protocol/muc#owner"
MUC_ROOMCONFIG = "http://jabber.org/protocol/muc#roomconfig"
MUC_ROOMINFO = "http://jabber.org/protocol/muc#roominfo"
MUC_REGISTER = "http://jabber.org/protocol/muc#register"
MUC_REQUEST = "http://jabber.org/protocol/muc#request"
MUC_STABLE_ID = "http://jabber.org/protocol/muc#stable_id"
MUC_SELF_PING = "http://jabber.org/protocol/muc#self-ping-optimization"
CONFERENCE = "jabber:x:conference"  # XEP-0249 direct invitations
MESSAGE_RETRACT = "urn:xmpp:message-retract:1"  # XEP-0424
MESSAGE_MODERATE = "urn:xmpp:message-moderate:1"  # XEP-0425
