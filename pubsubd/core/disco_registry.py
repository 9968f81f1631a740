"""What the server says about itself in XEP-0030: identities, features, items, forms.

The composition root owns one registry; modules add to it while they are set up, and the disco
and caps modules read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree


@dataclass
class Identity:
    category: str
    type: str
    name: str


@dataclass
class DiscoRegistry:
    """The server domain's disco#info and disco#items (XEP-0030 §3.1, §4.1)."""

    identities: list[Identity] = field(default_factory=list)
    features: set[str] = field(default_factory=set)
    items: list[tuple[str, str | None, str | None]] = field(default_factory=list)  # jid, node, name
    extensions: list[etree._Element] = field(default_factory=list)  # XEP-0128 forms
