"""Small builders for stanzas in the ``jabber:client`` content namespace.

Stanzas are built with the content namespace as the *default* namespace, because RFC 6120 §4.8.5
forbids prefixes on content-namespace elements on the wire.
"""

from __future__ import annotations

import secrets

from lxml import etree

from pubsubd import ns
from pubsubd.errors import StanzaError

_NSMAP = {None: ns.CLIENT}


def stanza(kind: str, *, to: str | None = None, from_: str | None = None, type_: str | None = None,
           id_: str | None = None) -> etree._Element:
    """A bare ``<message/>``, ``<presence/>`` or ``<iq/>`` with the given attributes."""
    el = etree.Element(ns.clark(ns.CLIENT, kind), nsmap=_NSMAP)
    if to is not None:
        el.set("to", to)
    if from_ is not None:
        el.set("from", from_)
    if type_ is not None:
        el.set("type", type_)
    if id_ is not None:
        el.set("id", id_)
    return el


def message(*, to: str, from_: str, body: str | None = None, type_: str | None = None,
            id_: str | None = None) -> etree._Element:
    el = stanza("message", to=to, from_=from_, type_=type_, id_=id_)
    if body is not None:
        etree.SubElement(el, ns.C_BODY).text = body
    return el


def iq(type_: str, *, to: str | None = None, from_: str | None = None,
       id_: str | None = None) -> etree._Element:
    return stanza("iq", to=to, from_=from_, type_=type_, id_=id_ or new_id())


def child(parent: etree._Element, namespace: str, local: str, **attrs: str) -> etree._Element:
    """Append ``<local xmlns=namespace/>`` declaring ``namespace`` as its default."""
    el = etree.SubElement(parent, ns.clark(namespace, local), nsmap={None: namespace})
    for key, value in attrs.items():
        el.set(key.rstrip("_"), value)
    return el


def element(namespace: str, local: str, **attrs: str) -> etree._Element:
    """A standalone payload element with ``namespace`` as its default namespace."""
    el = etree.Element(ns.clark(namespace, local), nsmap={None: namespace})
    for key, value in attrs.items():
        el.set(key.rstrip("_"), value)
    return el


def iq_result(request: etree._Element, payload: etree._Element | None = None) -> etree._Element:
    """The ``result`` answering ``request`` (RFC 6120 §8.2.3), addressed back to its sender."""
    el = stanza("iq", to=request.get("from"), from_=request.get("to"), type_="result",
                id_=request.get("id", ""))
    if payload is not None:
        el.append(payload)
    return el


def error_reply(request: etree._Element, error: StanzaError) -> etree._Element:
    """The error reply to ``request`` (RFC 6120 §8.3.1): same kind and id, addresses swapped.

    Messages and presences keep their payload out; an IQ error may include the request's child,
    which we omit to keep replies small (RFC 6120 §8.3.1 makes it optional).
    """
    kind = etree.QName(request).localname
    el = stanza(kind, to=request.get("from"), from_=request.get("to"), type_="error",
                id_=request.get("id"))
    el.append(error.to_element())
    return el


def new_id() -> str:
    return secrets.token_urlsafe(9)


def text_of(el: etree._Element | None, path: str | None = None) -> str | None:
    """The text of ``el`` (or of its child at ``path``), or None."""
    if el is None:
        return None
    if path is not None:
        el = el.find(path)
        if el is None:
            return None
    return el.text


def tostring(el: etree._Element) -> bytes:
    return etree.tostring(el)
