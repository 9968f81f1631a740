"""XEP-0157 Contact Addresses for XMPP Services: whom to write about abuse, security, support.

The addresses come from the configuration and are published as a XEP-0128 extension form in
the server's disco#info (§2), so clients and monitoring tools find them without a web page.
"""

from __future__ import annotations

from pubsubd.config import ContactAddresses
from pubsubd.core.disco_registry import DiscoRegistry
from pubsubd.core.module import Module
from pubsubd.xml.forms import Field, Form

SERVERINFO = "http://jabber.org/network/serverinfo"  # XEP-0157 §2: the FORM_TYPE


class ServerContactsModule(Module):
    name = "server_contacts"

    def __init__(self, *, disco: DiscoRegistry, contacts: ContactAddresses) -> None:
        super().__init__()
        self.disco = disco
        self.contacts = contacts

    def setup(self) -> None:
        fields = [Field(f"{kind}-addresses", values=list(addresses))  # §2: "<kind>-addresses"
                  for kind, addresses in (
                      ("abuse", self.contacts.abuse), ("admin", self.contacts.admin),
                      ("feedback", self.contacts.feedback), ("sales", self.contacts.sales),
                      ("security", self.contacts.security), ("status", self.contacts.status),
                      ("support", self.contacts.support))
                  if addresses]
        if not fields:
            return  # nothing configured: no empty form
        self.disco.extensions.append(Form.with_form_type("result", SERVERINFO, fields).to_element())
