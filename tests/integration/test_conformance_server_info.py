"""What the server says about itself: XEP-0157 contact addresses in its disco#info, XEP-0215
STUN/TURN services with time-limited credentials, XEP-0092 version without the OS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterator

import pytest
from harness import ServerProcess, connect, disconnect, run

from .pubsub_helpers import raw_iq

XDATA = "jabber:x:data"
EXTDISCO = "urn:xmpp:extdisco:2"
SECRET = "turn-shared-secret"


@pytest.fixture(scope="module")
def info_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("info"), extra={"server_info": {
        "contacts": {"abuse": ["mailto:abuse@localhost"],
                     "support": ["xmpp:support@localhost", "https://localhost/help"]},
        "external_services": [
            {"type": "stun", "host": "stun.localhost", "port": 3478, "transport": "udp"},
            {"type": "turn", "host": "turn.localhost", "port": 3478, "transport": "udp",
             "secret": SECRET, "credentials_ttl": 3600},
        ],
    }})
    proc.start()
    try:
        yield proc
    finally:
        if proc.alive():
            proc.kill()


def test_contact_addresses_in_disco_info(info_server: ServerProcess) -> None:
    jid = info_server.add_user("curious")

    async def scenario() -> None:
        client = await connect(info_server, jid)
        info = await raw_iq(client, "localhost", "get",
                            "<query xmlns='http://jabber.org/protocol/disco#info'/>")
        forms = {f.findtext(f"{{{XDATA}}}field[@var='FORM_TYPE']/{{{XDATA}}}value"): f
                 for f in info.iter(f"{{{XDATA}}}x")}
        serverinfo = forms["http://jabber.org/network/serverinfo"]  # XEP-0157 §2
        fields = {f.get("var"): [v.text for v in f.iter(f"{{{XDATA}}}value")]
                  for f in serverinfo.iter(f"{{{XDATA}}}field")}
        assert fields["abuse-addresses"] == ["mailto:abuse@localhost"]
        assert fields["support-addresses"] == ["xmpp:support@localhost", "https://localhost/help"]
        assert "sales-addresses" not in fields
        features = {f.get("var") for f in info.iter("{http://jabber.org/protocol/disco#info}feature")}
        assert EXTDISCO in features
        version = await raw_iq(client, "localhost", "get", "<query xmlns='jabber:iq:version'/>")
        assert version.findtext("{jabber:iq:version}query/{jabber:iq:version}name") == "pubsubd"
        assert version.find("{jabber:iq:version}query/{jabber:iq:version}os") is None
        await disconnect(client)

    run(scenario())


def test_external_services_with_turn_credentials(info_server: ServerProcess) -> None:
    jid = info_server.add_user("caller")

    async def scenario() -> None:
        client = await connect(info_server, jid)
        answer = await raw_iq(client, "localhost", "get", f"<services xmlns='{EXTDISCO}'/>")
        services = {s.get("type"): s for s in answer.iter(f"{{{EXTDISCO}}}service")}
        assert set(services) == {"stun", "turn"}
        assert services["stun"].get("host") == "stun.localhost"
        assert services["stun"].get("username") is None
        turn = services["turn"]
        expiry, user = turn.get("username").split(":", 1)
        assert user == jid and 3500 < int(expiry) - time.time() <= 3600
        expected = base64.b64encode(hmac.new(SECRET.encode(), turn.get("username").encode(),
                                             hashlib.sha1).digest()).decode()
        assert turn.get("password") == expected and turn.get("restricted") == "1"
        only = await raw_iq(client, "localhost", "get",
                            f"<services xmlns='{EXTDISCO}' type='stun'/>")
        assert [s.get("type") for s in only.iter(f"{{{EXTDISCO}}}service")] == ["stun"]
        creds = await raw_iq(client, "localhost", "get", f"<credentials xmlns='{EXTDISCO}'>"
                             "<service type='turn' host='turn.localhost'/></credentials>")
        assert creds.find(f".//{{{EXTDISCO}}}service").get("password")
        await disconnect(client)

    run(scenario())


def test_no_external_services_by_default(shared_server: ServerProcess) -> None:
    jid = shared_server.add_user("plain")

    async def scenario() -> None:
        client = await connect(shared_server, jid)
        answer = await raw_iq(client, "localhost", "get", f"<services xmlns='{EXTDISCO}'/>")
        assert answer.find(f"{{{EXTDISCO}}}services") is not None
        assert list(answer.iter(f"{{{EXTDISCO}}}service")) == []
        await disconnect(client)

    run(scenario())
