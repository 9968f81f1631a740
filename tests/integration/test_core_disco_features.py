"""The server's disco#info lists exactly the features that are implemented (XEP-0030 §3.1):
each advertised feature names the test that exercises it, and the ones no other test covers
are exercised here."""

from __future__ import annotations

import base64
import hashlib
import re
import xml.etree.ElementTree as ET

from harness import RawClient, ServerProcess

INFO = "http://jabber.org/protocol/disco#info"

# feature → where a working test shows it
FEATURE_TESTS = {
    "http://jabber.org/protocol/caps": "test_im_service_contact_and_caps, and the ver below",
    "http://jabber.org/protocol/commands": "test_admin_commands",
    INFO: "test_core_slixmpp",
    "http://jabber.org/protocol/disco#items": "test_core_slixmpp",
    "jabber:iq:last": "test_im_last_vcard_probe, and server uptime below",
    "jabber:iq:register": "test_core_slixmpp::test_register_change_password_and_login_again",
    "jabber:iq:version": "below",
    "msgoffline": "test_im_messaging::test_offline_messages_survive_a_restart_in_order",
    "urn:xmpp:blocking": "test_im_messaging, test_im_blocklist_roster_sync",
    "urn:xmpp:carbons:2": "test_im_messaging::test_carbons_copy_chats_to_other_resource",
    "urn:xmpp:extdisco:2": "test_conformance_server_info",
    "urn:xmpp:ping": "test_core_slixmpp, test_core_streams",
    "urn:xmpp:time": "below",
    "vcard-temp": "test_im_last_vcard_probe::test_vcard_set_get_and_anothers",
}


def ask(client: RawClient, id_: str, payload: str) -> ET.Element:
    client.send(f"<iq type='get' id='{id_}' to='localhost'>{payload}</iq>")
    text = client.read_until(f"id=\"{id_}\"".encode())
    text += client.read_until(b"</iq>") if not text.endswith("/>") else ""
    start = text.rindex("<iq")
    return ET.fromstring(text[start:])


def test_disco_info_lists_exactly_the_implemented_features(shared_server: ServerProcess) -> None:
    shared_server.add_user("discoverer")
    client = RawClient(shared_server)
    jid = client.login("discoverer")
    info = ask(client, "info", f"<query xmlns='{INFO}'/>")
    advertised = {f.get("var") for f in info.iter(f"{{{INFO}}}feature")}
    assert advertised == set(FEATURE_TESTS), (
        "every advertised feature needs a working test (add it to FEATURE_TESTS): "
        f"{sorted(advertised ^ set(FEATURE_TESTS))}")

    version = ask(client, "ver", "<query xmlns='jabber:iq:version'/>")
    assert version.get("type") == "result"
    assert version.findtext("{jabber:iq:version}query/{jabber:iq:version}name") == "pubsubd"
    time_ = ask(client, "time", "<time xmlns='urn:xmpp:time'/>")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z",
                        time_.findtext("{urn:xmpp:time}time/{urn:xmpp:time}utc") or "")
    assert time_.findtext("{urn:xmpp:time}time/{urn:xmpp:time}tzo")
    uptime = ask(client, "up", "<query xmlns='jabber:iq:last'/>")  # XEP-0012 §5
    assert int(uptime.find("{jabber:iq:last}query").get("seconds", "-1")) >= 0
    assert jid.startswith("discoverer@localhost/")
    client.close()


def test_server_caps_in_stream_features_hash_its_disco_info(shared_server: ServerProcess) -> None:
    """XEP-0115 §6.3: the ver in the stream features is the hash of the server's disco#info."""
    shared_server.add_user("capsreader")
    client = RawClient(shared_server)
    client.open()
    client.starttls()
    client.open()
    token = base64.b64encode(b"\0capsreader\0password1").decode()
    client.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
    client.read_until(b"<success")
    features = client.open()
    c = re.search(r"<c [^>]*xmlns=\"http://jabber.org/protocol/caps\"[^>]*/>", features)
    assert c is not None, features
    ver = re.search(r'ver="([^"]+)"', c.group(0)).group(1)  # type: ignore[union-attr]
    client.send("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    client.read_until(b"</iq>")
    info = ask(client, "info", f"<query xmlns='{INFO}'/>").find(f"{{{INFO}}}query")
    assert info is not None
    identities = sorted("/".join((i.get("category", ""), i.get("type", ""), "", i.get("name", "")))
                        for i in info.iter(f"{{{INFO}}}identity"))
    feature_vars = sorted(f.get("var", "") for f in info.iter(f"{{{INFO}}}feature"))
    assert not list(info.iter("{jabber:x:data}x")), "extend the hash below with the forms"
    text = "".join(f"{x}<" for x in identities + feature_vars)
    assert ver == base64.b64encode(hashlib.sha1(text.encode()).digest()).decode()
    client.close()
