"""XEP-0115 §5.2 and §5.3: the verification string and hash of the spec's examples."""

from __future__ import annotations

from lxml import etree

from pubsubd.modules.xep0115_caps import caps_hash

SIMPLE = """<query xmlns='http://jabber.org/protocol/disco#info'>
  <identity category='client' name='Exodus 0.9.1' type='pc'/>
  <feature var='http://jabber.org/protocol/caps'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/muc'/>
</query>"""

COMPLEX = """<query xmlns='http://jabber.org/protocol/disco#info'>
  <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
  <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>
  <feature var='http://jabber.org/protocol/caps'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/muc'/>
  <x xmlns='jabber:x:data' type='result'>
    <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>
    <field var='ip_version'><value>ipv4</value><value>ipv6</value></field>
    <field var='os'><value>Mac</value></field>
    <field var='os_version'><value>10.5.1</value></field>
    <field var='software'><value>Psi</value></field>
    <field var='software_version'><value>0.11</value></field>
  </x>
</query>"""


def test_simple_example() -> None:
    assert caps_hash(etree.fromstring(SIMPLE)) == "QgayPKawpkPSDYmwT/WM94uAlu0="


def test_complex_example_with_form() -> None:
    assert caps_hash(etree.fromstring(COMPLEX.encode())) == "q07IKJEyjvHSyhy//CH0CxmKi8w="
