"""Attacks from the security review, replayed against the real server: each is refused with the
spec's error, memory stays bounded where memory was the target, and another client is served
before and after (a ping answered)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from harness import STREAM_HEADER, RawClient, RawSocket, ServerProcess

STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
SERVER_HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:db='jabber:server:dialback' "
    "xmlns:stream='http://etherx.jabber.org/streams' from='{from_}' to='{to}' version='1.0'>"
)
MIB = 1024 * 1024


class Blackhole:
    """A TCP port that accepts and never answers: a dialback authority that keeps us waiting."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(200)
        self.port = self.sock.getsockname()[1]


@pytest.fixture(scope="module")
def blackhole() -> Iterator[Blackhole]:
    hole = Blackhole()
    yield hole
    hole.sock.close()


@pytest.fixture(scope="module")
def hardened(tmp_path_factory: pytest.TempPathFactory, blackhole: Blackhole
             ) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("hardened"))
    proc.config["listeners"].append({"kind": "s2s", "address": "127.0.0.1", "port": 0})
    proc.config["limits"] = {"disco_items_page": 10, "max_nodes_per_user": 5,
                             "private_xml_bytes": 2000, "max_rooms_per_user": 3}
    proc.config["s2s"] = {
        "require_tls": False, "connect_timeout": 30.0, "handshake_timeout": 60.0,
        "max_pending_verifications": 5, "max_domain_pairs": 20,
        "routes": {f"d{i}.example": f"127.0.0.1:{blackhole.port}" for i in range(20)},
    }
    proc.config_path.write_text(yaml.safe_dump(proc.config))
    proc.start()
    proc.s2s_port = proc.port("s2s")  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        if proc.alive():
            proc.kill()


@pytest.fixture(scope="module")
def watcher(hardened: ServerProcess) -> Iterator[RawClient]:
    hardened.add_user("watcher")
    client = RawClient(hardened)
    client.login("watcher")
    yield client
    client.close()


def still_served(client: RawClient) -> None:
    tag = f"p{time.monotonic_ns()}"
    client.send(f"<iq type='get' id='{tag}'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert 'type="result"' in client.read_until(f'id="{tag}"/>'.encode())


def answer_to(client: RawClient, stanza: str, id_: str) -> str:
    """Send an IQ and return its whole answer (a result may be an empty element)."""
    client.send(stanza)
    answer = client.read_until(f'id="{id_}"'.encode()) + client.read_until(b">")
    if not answer.endswith("/>"):
        answer += client.read_until(b"</iq>")
    return answer


def rss_kib(server: ServerProcess) -> int:
    assert server.proc is not None
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("VmRSS:")))


def flood(sock: socket.socket, prefix: bytes, total: int) -> bool:
    """Send ``prefix`` then ``total`` bytes of attributes that never close their tag; True
    if the server cut the connection before all was sent."""
    piece = b" a%d='" + b"x" * MIB + b"'"
    try:
        sock.sendall(prefix)
        for i in range(total // MIB):
            sock.sendall(piece.replace(b"%d", str(i).encode()))
    except OSError:
        return True
    return False


def read_until_closed(sock: socket.socket, timeout: float = 10.0) -> str:
    raw = RawSocket()
    raw.sock, raw.buffer = sock, b""
    try:
        return raw.read_all(timeout)
    except OSError:
        return raw.buffer.decode(errors="replace")


# --- 1, 2: the stanza size limit counts unfinished start tags --------------------------------

@pytest.mark.parametrize("port_kind", ["c2s", "s2s"])
def test_unfinished_stream_header_is_cut_off(hardened: ServerProcess, watcher: RawClient,
                                             port_kind: str) -> None:
    still_served(watcher)
    before = rss_kib(hardened)
    port = hardened.c2s_port if port_kind == "c2s" else hardened.s2s_port  # type: ignore[attr-defined]
    sock = socket.create_connection(("127.0.0.1", port))
    header = STREAM_HEADER.format(domain=hardened.domain)
    cut = flood(sock, header[: header.index(" version=")].encode(), 64 * MIB)
    answer = read_until_closed(sock)
    sock.close()
    assert cut, "the server read 64 MiB of one stream header"
    # RFC 6120 §4.9.3.18 once the header can be answered; before it, the socket just closes.
    assert "policy-violation" in answer or answer == ""
    assert rss_kib(hardened) - before < 32 * 1024
    still_served(watcher)


def test_huge_attribute_on_a_stanza_is_a_policy_violation(hardened: ServerProcess,
                                                          watcher: RawClient) -> None:
    hardened.add_user("bigattr")
    client = RawClient(hardened)
    client.login("bigattr")
    before = rss_kib(hardened)
    cut = flood(client.sock, b"<message to='watcher@localhost' type='chat'", 32 * MIB)  # type: ignore[arg-type]
    answer = read_until_closed(client.sock)  # type: ignore[arg-type]
    assert cut
    assert f"<policy-violation xmlns='{STREAMS}'" in client.buffer.decode() + answer
    assert rss_kib(hardened) - before < 32 * 1024
    still_served(watcher)


# --- 6: the database is private ---------------------------------------------------------------

def test_database_files_are_private(hardened: ServerProcess, watcher: RawClient) -> None:
    still_served(watcher)  # the WAL exists once something was written
    db = Path(hardened.config["storage"]["path"])
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        assert path.stat().st_mode & 0o077 == 0, path  # SCRAM keys: owner only


# --- 7: a resource that prepares to an edge space --------------------------------------------

def test_resource_starting_with_no_break_space_is_a_bad_request(hardened: ServerProcess,
                                                                watcher: RawClient) -> None:
    import base64

    hardened.add_user("nbsp")
    client = RawClient(hardened)
    client.open()
    client.starttls()
    client.open()
    token = base64.b64encode(b"\0nbsp\0password1").decode()
    client.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
    client.read_until(b"<success")
    client.open()
    client.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                "<resource>\u00a0phone</resource></bind></iq>")
    reply = client.read_until(b"</iq>")
    assert "bad-request" in reply and 'type="error"' in reply  # RFC 6120 §7.7.2.1
    client.send("<iq type='set' id='b2'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                "<resource>phone</resource></bind></iq>")
    assert "<jid>nbsp@localhost/phone</jid>" in client.read_until(b"</iq>")  # stream kept
    client.close()
    assert "InvalidJID" not in hardened.log()
    still_served(watcher)


# --- 8: start-up failures are one line ------------------------------------------------------------

@pytest.mark.parametrize("where", ["busy", "missing"])
def test_run_on_a_busy_port_or_missing_address_says_so_in_one_line(tmp_path: Path,
                                                                    where: str) -> None:
    import subprocess
    import sys

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    address, port = (("127.0.0.1", busy.getsockname()[1]) if where == "busy"
                     else ("192.0.2.77", 5222))  # TEST-NET-1: on no interface here
    config = {"domains": ["localhost"], "data_dir": str(tmp_path / "var"),
              "storage": {"path": str(tmp_path / "var" / "db.sqlite3")},
              "control": {"enabled": False},
              "listeners": [{"kind": "metrics", "address": address, "port": port}]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    try:
        done = subprocess.run([sys.executable, "-m", "pubsubd", "run", "--config",
                               str(tmp_path / "c.yaml")], capture_output=True, text=True,
                              timeout=60, cwd=tmp_path)
    finally:
        busy.close()
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"pubsubd: cannot start: metrics listener on {address}:{port}: ")
    assert len(done.stderr.splitlines()) < 10, done.stderr  # the welcome, a few log lines, this
    assert "Traceback" not in done.stdout + done.stderr


# --- 10: dialback verifications are bounded ---------------------------------------------------

def test_dialback_flood_is_bounded(hardened: ServerProcess, watcher: RawClient) -> None:
    sock = socket.create_connection(("127.0.0.1", hardened.s2s_port))  # type: ignore[attr-defined]
    raw = RawSocket()
    raw.sock, raw.buffer = sock, b""
    sock.sendall(SERVER_HEADER.format(from_="d0.example", to=hardened.domain).encode())
    raw.read_until(b"</stream:features>")
    for i in range(20):
        sock.sendall(f"<db:result from='d{i}.example' to='{hardened.domain}'>k{i}</db:result>"
                     .encode())
    refusals = 0
    while refusals < 15:  # 5 checks may be pending at once: every other request is refused
        refusals += raw.read_until(b"</db:result>").count("resource-constraint")
    still_served(watcher)
    sock.close()


def test_s2s_never_connects_to_a_loopback_domain(hardened: ServerProcess,
                                                 watcher: RawClient) -> None:
    # A domain that is a loopback IP literal: without a policy the server would connect to it.
    trap = socket.socket()
    trap.bind(("127.0.0.3", 5269))
    trap.listen(5)
    trap.settimeout(0.5)
    try:
        watcher.send("<message to='x@127.0.0.3' id='loop' type='chat'><body>hi</body></message>")
        bounce = watcher.read_until(b"</message>", timeout=30)
        assert "remote-server-not-found" in bounce
        with pytest.raises(TimeoutError):
            trap.accept()
    finally:
        trap.close()
    still_served(watcher)


# --- 3: in-band registration is rate limited ---------------------------------------------------

def test_in_band_registration_is_rate_limited(hardened: ServerProcess, watcher: RawClient) -> None:
    client = RawClient(hardened)
    client.open()
    client.starttls()
    client.open()
    answers = []
    for i in range(10):  # one stream, as fast as the server answers
        client.send(f"<iq type='set' id='r{i}'><query xmlns='jabber:iq:register'>"
                    f"<username>spam{i}</username><password>secret{i}x</password></query></iq>")
        answer = client.read_until(f'id="r{i}"'.encode()) + client.read_until(b">")
        if not answer.endswith("/>"):
            answer += client.read_until(b"</iq>")
        answers.append(answer)
    created = [a for a in answers if 'type="result"' in a]
    assert len(created) == 3  # registration.rate per address and window
    assert all("resource-constraint" in a and "try later" in a for a in answers[3:])
    client.close()
    still_served(watcher)


# --- 5: quotas and paginated disco#items ------------------------------------------------------

PUBSUB = "http://jabber.org/protocol/pubsub"


def test_node_quota_and_paged_disco_items(hardened: ServerProcess, watcher: RawClient) -> None:
    service = f"pubsub.{hardened.domain}"
    for user in ("owner1", "owner2", "owner3"):
        hardened.add_user(user)
        client = RawClient(hardened)
        client.login(user)
        for i in range(6):
            answer = answer_to(client, f"<iq type='set' to='{service}' id='c{i}'>"
                                       f"<pubsub xmlns='{PUBSUB}'><create node='{user}-{i}'/>"
                                       "</pubsub></iq>", f"c{i}")
            if i < 5:
                assert 'type="result"' in answer, answer
            else:  # limits.max_nodes_per_user
                assert "policy-violation" in answer and "the limit" in answer, answer
        client.close()
    watcher.send(f"<iq type='get' to='{service}' id='items'>"
                 "<query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
    answer = watcher.read_until(b"</iq>")
    assert answer.count("<item ") == 10  # the first page only (limits.disco_items_page)
    assert "<count>15</count>" in answer  # XEP-0059: the client learns there is more
    last = answer.split("<last>")[1].split("</last>")[0]
    watcher.send(f"<iq type='get' to='{service}' id='items2'>"
                 "<query xmlns='http://jabber.org/protocol/disco#items'>"
                 "<set xmlns='http://jabber.org/protocol/rsm'><max>1000</max>"
                 f"<after>{last}</after></set></query></iq>")
    assert watcher.read_until(b"</iq>").count("<item ") == 5
    still_served(watcher)


def test_private_xml_quota(hardened: ServerProcess, watcher: RawClient) -> None:
    hardened.add_user("hoarder")
    client = RawClient(hardened)
    client.login("hoarder")

    def store(id_: str, name: str, size: int) -> str:
        return answer_to(client, f"<iq type='set' id='{id_}'><query xmlns='jabber:iq:private'>"
                                 f"<{name} xmlns='urn:example:{name}'>{'x' * size}</{name}>"
                                 "</query></iq>", id_)

    assert 'type="result"' in store("p1", "a", 1500)
    refused = store("p2", "b", 1000)  # limits.private_xml_bytes
    assert "resource-constraint" in refused and "2000 bytes" in refused, refused
    assert 'type="result"' in store("p3", "a", 1800)  # replacing counts the new size only
    client.close()
    still_served(watcher)


def test_room_quota_counts_live_and_persistent_rooms(hardened: ServerProcess,
                                                     watcher: RawClient) -> None:
    """limits.max_rooms_per_user: temporary rooms count while they live, persistent ones
    while they are stored; the join that would create one more is refused (not-allowed)."""
    service = f"conference.{hardened.domain}"
    MUC = "http://jabber.org/protocol/muc"

    def join(client: RawClient, room: str) -> str:
        """Enter ``room``; the self-presence (status 110) or the error presence."""
        client.send(f"<presence to='{room}@{service}/me'><x xmlns='{MUC}'/></presence>")
        while True:
            presence = client.read_until(b"</presence>")
            if f'from="{room}@{service}/me"' in presence and (
                    'code="110"' in presence or 'type="error"' in presence):
                return presence

    still_served(watcher)
    hardened.add_user("roomer")
    roomer = RawClient(hardened)
    roomer.login("roomer")
    for room in ("r1", "r2", "r3"):
        assert 'code="201"' in join(roomer, room)  # created, owned
    configured = answer_to(roomer, f"<iq type='set' to='r3@{service}' id='cfg'>"
                                   f"<query xmlns='{MUC}#owner'><x xmlns='jabber:x:data' "
                                   f"type='submit'><field var='FORM_TYPE'><value>{MUC}#roomconfig"
                                   "</value></field><field var='muc#roomconfig_persistentroom'>"
                                   "<value>1</value></field></x></query></iq>", "cfg")
    assert 'type="result"' in configured, configured
    refused = join(roomer, "r4")
    assert 'type="error"' in refused and "not-allowed" in refused, refused
    assert "3 rooms" in refused, refused
    for room in ("r1", "r3"):  # r1 vanishes with its last occupant (temporary); r3 is stored
        roomer.send(f"<presence type='unavailable' to='{room}@{service}/me'/>")
        roomer.read_until(f'from="{room}@{service}/me" type="unavailable"'.encode())
    assert 'code="201"' in join(roomer, "r4")
    refused = join(roomer, "r5")  # r2 (live), r3 (stored) and r4
    assert "not-allowed" in refused, refused
    hardened.add_user("roomer2")
    other = RawClient(hardened)
    other.login("roomer2")
    assert 'code="201"' in join(other, "r5")  # the quota is per user
    other.close()
    roomer.close()
    still_served(watcher)


# --- 4: parallel guessing from one address shares the slow-down ------------------------------

def test_parallel_password_guesses_from_one_ip_are_spaced(tmp_path: Path) -> None:
    import base64
    import threading

    server = ServerProcess(tmp_path, extra={"auth": {"failures_before_delay": 1,
                                                     "max_delay": 1.0}})
    server.start()
    try:
        server.add_user("victim")
        server.add_user("other")
        other = RawClient(server)
        other.login("other")
        token = base64.b64encode(b"\0victim\0wrong-guess").decode()
        auth = f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        clients = []
        for _ in range(7):
            client = RawClient(server)
            client.open()
            client.starttls()
            client.open()
            clients.append(client)
        clients[0].send(auth)  # the first failure: from now on answers are slowed down
        clients[0].read_until(b"</failure>")
        answered: list[float] = []

        def guess(client: RawClient) -> None:
            client.send(auth)
            client.read_until(b"</failure>", timeout=30)
            answered.append(time.monotonic())

        threads = [threading.Thread(target=guess, args=(c,)) for c in clients[1:]]
        for thread in threads:
            thread.start()
        still_served(other)  # a logged-in user is not slowed down meanwhile
        for thread in threads:
            thread.join()
        assert len(answered) == 6
        # Six guesses at once were answered one delay (>= 0.5 s) apart, not together.
        assert max(answered) - min(answered) >= 2.0
        still_served(other)
    finally:
        server.kill()
