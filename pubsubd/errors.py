"""Stream and stanza errors as values, with their XML forms.

Domain code raises these; one place (the router / IQ dispatch) turns them into XML.
"""

from __future__ import annotations

from enum import Enum

from lxml import etree

from pubsubd import ns


class StreamCondition(str, Enum):
    """RFC 6120 §4.9.3: every defined stream error condition."""

    BAD_FORMAT = "bad-format"
    BAD_NAMESPACE_PREFIX = "bad-namespace-prefix"
    CONFLICT = "conflict"
    CONNECTION_TIMEOUT = "connection-timeout"
    HOST_GONE = "host-gone"
    HOST_UNKNOWN = "host-unknown"
    IMPROPER_ADDRESSING = "improper-addressing"
    INTERNAL_SERVER_ERROR = "internal-server-error"
    INVALID_FROM = "invalid-from"
    INVALID_NAMESPACE = "invalid-namespace"
    INVALID_XML = "invalid-xml"
    NOT_AUTHORIZED = "not-authorized"
    NOT_WELL_FORMED = "not-well-formed"
    POLICY_VIOLATION = "policy-violation"
    REMOTE_CONNECTION_FAILED = "remote-connection-failed"
    RESET = "reset"
    RESOURCE_CONSTRAINT = "resource-constraint"
    RESTRICTED_XML = "restricted-xml"
    SEE_OTHER_HOST = "see-other-host"
    SYSTEM_SHUTDOWN = "system-shutdown"
    UNDEFINED_CONDITION = "undefined-condition"
    UNSUPPORTED_ENCODING = "unsupported-encoding"
    UNSUPPORTED_FEATURE = "unsupported-feature"
    UNSUPPORTED_STANZA_TYPE = "unsupported-stanza-type"
    UNSUPPORTED_VERSION = "unsupported-version"


class StreamError(Exception):
    """A condition that ends the stream (RFC 6120 §4.9): send it, then close."""

    def __init__(self, condition: StreamCondition, text: str | None = None) -> None:
        super().__init__(f"{condition.value}: {text}" if text else condition.value)
        self.condition = condition
        self.text = text

    def to_element(self) -> etree._Element:
        el = etree.Element(ns.STREAM_ERROR, nsmap={"stream": ns.STREAM})
        etree.SubElement(el, ns.clark(ns.STREAMS_ERR, self.condition.value),
                         nsmap={None: ns.STREAMS_ERR})
        if self.text:
            text = etree.SubElement(el, ns.clark(ns.STREAMS_ERR, "text"),
                                    nsmap={None: ns.STREAMS_ERR})
            text.set(ns.XML_LANG, "en")
            text.text = self.text
        return el

    def to_bytes(self) -> bytes:
        """Serialized with the ``stream:`` prefix the stream header declared."""
        inner = f"<{self.condition.value} xmlns='{ns.STREAMS_ERR}'/>"
        if self.text:
            inner += f"<text xmlns='{ns.STREAMS_ERR}' xml:lang='en'>{_escape(self.text)}</text>"
        return f"<stream:error>{inner}</stream:error>".encode()


class Condition(str, Enum):
    """RFC 6120 §8.3.3 stanza error conditions."""

    BAD_REQUEST = "bad-request"
    CONFLICT = "conflict"
    FEATURE_NOT_IMPLEMENTED = "feature-not-implemented"
    FORBIDDEN = "forbidden"
    GONE = "gone"
    INTERNAL_SERVER_ERROR = "internal-server-error"
    ITEM_NOT_FOUND = "item-not-found"
    JID_MALFORMED = "jid-malformed"
    NOT_ACCEPTABLE = "not-acceptable"
    NOT_ALLOWED = "not-allowed"
    NOT_AUTHORIZED = "not-authorized"
    POLICY_VIOLATION = "policy-violation"
    RECIPIENT_UNAVAILABLE = "recipient-unavailable"
    REDIRECT = "redirect"
    REGISTRATION_REQUIRED = "registration-required"
    REMOTE_SERVER_NOT_FOUND = "remote-server-not-found"
    REMOTE_SERVER_TIMEOUT = "remote-server-timeout"
    RESOURCE_CONSTRAINT = "resource-constraint"
    SERVICE_UNAVAILABLE = "service-unavailable"
    SUBSCRIPTION_REQUIRED = "subscription-required"
    UNDEFINED_CONDITION = "undefined-condition"
    UNEXPECTED_REQUEST = "unexpected-request"


# RFC 6120 §8.3.3: the error type each condition carries unless the sender knows better.
DEFAULT_TYPE: dict[Condition, str] = {
    Condition.BAD_REQUEST: "modify",
    Condition.CONFLICT: "cancel",
    Condition.FEATURE_NOT_IMPLEMENTED: "cancel",
    Condition.FORBIDDEN: "auth",
    Condition.GONE: "cancel",
    Condition.INTERNAL_SERVER_ERROR: "cancel",
    Condition.ITEM_NOT_FOUND: "cancel",
    Condition.JID_MALFORMED: "modify",
    Condition.NOT_ACCEPTABLE: "modify",
    Condition.NOT_ALLOWED: "cancel",
    Condition.NOT_AUTHORIZED: "auth",
    Condition.POLICY_VIOLATION: "modify",
    Condition.RECIPIENT_UNAVAILABLE: "wait",
    Condition.REDIRECT: "modify",
    Condition.REGISTRATION_REQUIRED: "auth",
    Condition.REMOTE_SERVER_NOT_FOUND: "cancel",
    Condition.REMOTE_SERVER_TIMEOUT: "wait",
    Condition.RESOURCE_CONSTRAINT: "wait",
    Condition.SERVICE_UNAVAILABLE: "cancel",
    Condition.SUBSCRIPTION_REQUIRED: "auth",
    Condition.UNDEFINED_CONDITION: "cancel",
    Condition.UNEXPECTED_REQUEST: "wait",
}


class StanzaError(Exception):
    """An error answer to one stanza (RFC 6120 §8.3); the stream goes on."""

    def __init__(
        self,
        condition: Condition | str,
        text: str | None = None,
        *,
        type_: str | None = None,
        app: etree._Element | None = None,
        by: str | None = None,
        value: str | None = None,
    ) -> None:
        self.condition = Condition(condition)
        super().__init__(f"{self.condition.value}: {text}" if text else self.condition.value)
        self.text = text
        self.type = type_ or DEFAULT_TYPE[self.condition]
        self.app = app
        self.by = by
        self.value = value  # e.g. the redirect / gone URI (RFC 6120 §8.3.3.5)

    def to_element(self) -> etree._Element:
        el = etree.Element(ns.C_ERROR, type=self.type, nsmap={None: ns.CLIENT})
        if self.by:
            el.set("by", self.by)
        cond = etree.SubElement(el, ns.clark(ns.STANZAS_ERR, self.condition.value),
                                nsmap={None: ns.STANZAS_ERR})
        if self.value:
            cond.text = self.value
        if self.text:
            text = etree.SubElement(el, ns.clark(ns.STANZAS_ERR, "text"),
                                    nsmap={None: ns.STANZAS_ERR})
            text.set(ns.XML_LANG, "en")
            text.text = self.text
        if self.app is not None:
            el.append(self.app)
        return el


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
