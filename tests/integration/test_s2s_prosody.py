"""Federation with Prosody (Debian's package): STARTTLS with self-signed certificates and
Server Dialback both ways, then messages, presence subscriptions and IQs.

Prosody finds a peer through DNS, with no static routes, so pubsubd serves the domain
``127.0.0.2`` (an IP literal Prosody connects to directly) on 127.0.0.2:5269; pubsubd reaches
Prosody through a static route.
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import ServerProcess, connect, disconnect, make_client, reserved_port, run
from peers import needs_peers

from .s2s_support import Inbox, federated_server, stanza

PROSODY_DOMAIN = "prosody.localhost"
OUR_DOMAIN = "127.0.0.2"


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds it
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


required_peers = needs_peers("prosody")
pytestmark = pytest.mark.skipif(not _port_free(OUR_DOMAIN, 5269), reason="127.0.0.2:5269 is taken")


def _self_signed(directory: Path, domain: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{domain}.crt", directory / f"{domain}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class Prosody:
    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.c2s_port, self.s2s_port = reserved_port(), reserved_port()
        cert, key = _self_signed(workdir, PROSODY_DOMAIN)
        (workdir / "data").mkdir(exist_ok=True)
        self.log_path = workdir / "prosody.log"
        self.config_path = workdir / "prosody.cfg.lua"
        self.config_path.write_text(f"""
run_as_root = true
pidfile = "{workdir}/prosody.pid"
data_path = "{workdir}/data"
plugin_paths = {{}}
log = {{ debug = "{self.log_path}" }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {self.c2s_port} }}
s2s_ports = {{ {self.s2s_port} }}
c2s_direct_tls_ports = {{}}
s2s_direct_tls_ports = {{}}
http_ports = {{}}
https_ports = {{}}
c2s_require_encryption = false
s2s_require_encryption = true
s2s_secure_auth = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
storage = "internal"
modules_enabled = {{ "roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping"; "presence" }}
modules_disabled = {{ "posix"; "s2s_bidi" }}
ssl = {{ certificate = "{cert}"; key = "{key}"; }}
VirtualHost "{PROSODY_DOMAIN}"
""")
        self.proc: subprocess.Popen[bytes] | None = None

    def add_user(self, local: str, password: str = "password1") -> str:
        accounts = self.workdir / "data" / PROSODY_DOMAIN.replace(".", "%2e") / "accounts"
        accounts.mkdir(parents=True, exist_ok=True)
        (accounts / f"{local}.dat").write_text(f'return {{ ["password"] = "{password}"; }};\n')
        return f"{local}@{PROSODY_DOMAIN}"

    def start(self, timeout: float = 15.0) -> None:
        out = open(self.workdir / "stdout.log", "ab")
        self.proc = subprocess.Popen(["prosody", "--config", str(self.config_path), "-F"],
                                     cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prosody exited:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.s2s_port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"prosody did not start:\n{self.log()}")

    def log(self) -> str:
        text = (self.workdir / "stdout.log").read_text(errors="replace")
        if self.log_path.exists():
            text += self.log_path.read_text(errors="replace")
        return text[-20000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Prosody]]:
    base = tmp_path_factory.mktemp("prosody")
    prosody = Prosody(base / "prosody")
    ours = federated_server(base / "pubsubd", OUR_DOMAIN, 5269,
                            {PROSODY_DOMAIN: f"127.0.0.1:{prosody.s2s_port}"})
    ours.config["listeners"][-1]["address"] = OUR_DOMAIN
    ours.config_path.write_text(yaml.safe_dump(ours.config))
    prosody.start()
    try:
        ours.start()
        try:
            yield ours, prosody
        finally:
            if ours.alive():
                ours.kill()
    finally:
        prosody.stop()


async def _prosody_client(prosody: Prosody, jid: str) -> Any:
    client = make_client(jid, "password1")
    started: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    client.add_event_handler("session_start",
                             lambda _: started.done() or started.set_result(True))
    client.connect(host="127.0.0.1", port=prosody.c2s_port)
    await asyncio.wait_for(started, 15)
    return client


def test_messages_presence_and_iq_with_prosody(peers: tuple[ServerProcess, Prosody]) -> None:
    ours, prosody = peers
    alice, romeo = ours.add_user("alice"), prosody.add_user("romeo")

    async def scenario() -> None:
        ca = await connect(ours, alice)
        cr = await _prosody_client(prosody, romeo)
        cr.auto_authorize = True
        ina, inr = Inbox(ca), Inbox(cr)
        await cr.get_roster()
        cr.send_presence()
        # pubsubd → Prosody: Prosody verifies our key by dialing back to 127.0.0.2:5269.
        ca.send_message(mto=romeo, mbody="hello prosody", mtype="chat")
        got = await inr.wait(stanza("message", "chat", alice), timeout=20)
        assert got.findtext("{jabber:client}body") == "hello prosody"
        # Prosody → pubsubd: we verify Prosody's key through the static route.
        cr.send_message(mto=alice, mbody="hello pubsubd", mtype="chat")
        back = await ina.wait(stanza("message", "chat", romeo), timeout=20)
        assert back.findtext("{jabber:client}body") == "hello pubsubd"
        # RFC 6121 §3.1: a subscription across the two implementations.
        ca.send_presence(pto=romeo, ptype="subscribe")
        await ina.wait(stanza("presence", "subscribed", romeo), timeout=20)
        await ina.wait(stanza("presence", None, romeo), timeout=20)
        # An IQ to Prosody's domain and its answer.
        await ca.plugin["xep_0199"].ping(PROSODY_DOMAIN, timeout=10)
        await disconnect(ca, cr)

    try:
        run(scenario())
    except BaseException:
        print(prosody.log())
        print(ours.log())
        raise
