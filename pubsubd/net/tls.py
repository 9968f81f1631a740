"""TLS contexts, and a self-signed certificate for first runs.

RFC 7590 sets the TLS profile for XMPP: TLS 1.2 or newer, strong ciphers only.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import ssl
from pathlib import Path

log = logging.getLogger(__name__)


def ensure_self_signed(directory: Path, domains: list[str]) -> tuple[Path, Path]:
    """Create (once) a self-signed certificate for ``domains`` under ``directory``."""
    cert_path = directory / "tls" / "selfsigned.crt"
    key_path = directory / "tls" / "selfsigned.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domains[0])])
    alt_names: list[x509.GeneralName] = []
    for domain in domains:
        alt_names.append(x509.DNSName(domain))
        alt_names.append(x509.DNSName(f"*.{domain}"))
    alt_names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    log.info("created a self-signed certificate for %s in %s", ", ".join(domains), cert_path)
    return cert_path, key_path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 7590 §3
    ctx.load_cert_chain(str(cert), str(key))
    ctx.set_alpn_protocols(["xmpp-client"])  # XEP-0368 §3
    return ctx
