"""The XMPP side of HTTP File Upload (XEP-0363) at <subdomain>.<domain>, its HTTP listeners
and the expiry of old files.

A local user asks for a slot (§4); the answer carries a PUT URL with a signed Authorization
header and the GET URL to share. Limits: the file size (§4, file-too-large), a per-account
quota counting stored files and pending slots, and an age after which files are deleted.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import trio
from lxml import etree

from pubsubd import ns
from pubsubd.config import UploadConfig
from pubsubd.core.disco_registry import DiscoRegistry
from pubsubd.core.module import Module
from pubsubd.core.router import Router, Stanza
from pubsubd.errors import Condition, StanzaError
from pubsubd.net.http import serve_http
from pubsubd.net.listener import ConnectionHandler, Listener
from pubsubd.storage.interfaces import UploadRecord, UploadStore
from pubsubd.xml import builders
from pubsubd.xml.forms import Field, Form

from . import slots
from .files import FileService

REQUEST = f"{{{slots.UPLOAD}}}request"
KINDS = ("upload_tls", "upload")  # listener kinds, the TLS one preferred for URLs
HTTP_TIMEOUT = 300.0  # seconds one HTTP request (an upload) may take
HANDSHAKE_TIMEOUT = 30.0


class UploadModule(Module):
    name = "upload"

    def __init__(self, *, settings: UploadConfig, primary_domain: str, domains: Iterable[str],
                 listener_kinds_configured: Iterable[str], data_dir: Path, store: UploadStore,
                 router: Router, disco: DiscoRegistry, tls: ssl.SSLContext | None,
                 listeners: Sequence[Listener], listener_kinds: dict[str, ConnectionHandler],
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.settings = settings
        self.domain = f"{settings.subdomain}.{primary_domain}"
        self.domains = frozenset(domains)
        # Without a listener to upload to, the service is not offered at all.
        self.enabled = settings.enabled and any(k in KINDS for k in listener_kinds_configured)
        self.directory = data_dir / "upload"
        self.store = store
        self.router = router
        self.disco = disco
        self.tls = tls
        self.listeners = listeners  # bound when the server runs: the URL needs their ports
        self.listener_kinds = listener_kinds
        self.clock = clock

    def setup(self) -> None:
        if not self.enabled:
            return
        (self.directory / "files").mkdir(parents=True, exist_ok=True)
        self.files = FileService(store=self.store, directory=self.directory / "files",
                                 secret=self._secret(), slot_timeout=self.settings.slot_timeout,
                                 clock=self.clock)
        self.router.add_component(self)
        self.disco.items.append((self.domain, None, "HTTP File Upload"))
        self.listener_kinds["upload"] = self._serve_plain
        self.listener_kinds["upload_tls"] = self._serve_tls

    def _secret(self) -> bytes:
        if self.settings.secret is not None:
            return self.settings.secret.encode()
        path = self.directory / "secret"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32))
        return path.read_text().strip().encode()

    # --- XMPP ---------------------------------------------------------------------------

    async def receive(self, st: Stanza) -> None:
        if st.kind != "iq" or st.type not in ("get", "set"):
            return  # results, errors, messages and presence mean nothing here
        payload = st.element[0] if len(st.element) else None
        try:
            if payload is None:
                raise StanzaError(Condition.BAD_REQUEST)
            if st.type == "get" and payload.tag == ns.clark(ns.DISCO_INFO, "query"):
                answer = self._info(payload)
            elif st.type == "get" and payload.tag == ns.clark(ns.DISCO_ITEMS, "query"):
                answer = builders.element(ns.DISCO_ITEMS, "query")
            elif st.type == "get" and payload.tag == REQUEST:
                answer = await self._slot(st, payload)
            else:
                raise StanzaError(Condition.SERVICE_UNAVAILABLE)  # RFC 6120 §8.4
        except StanzaError as error:
            await self.router.bounce(st, error)
            return
        await self.router.reply(st, answer)

    def _info(self, query: etree._Element) -> etree._Element:
        if query.get("node"):
            raise StanzaError(Condition.ITEM_NOT_FOUND)
        info = builders.element(ns.DISCO_INFO, "query")
        etree.SubElement(info, ns.clark(ns.DISCO_INFO, "identity"), category="store",
                         type="file", name="HTTP File Upload")  # §3
        for feature in (ns.DISCO_INFO, ns.DISCO_ITEMS, slots.UPLOAD):
            etree.SubElement(info, ns.clark(ns.DISCO_INFO, "feature"), var=feature)
        # §3: the largest file, as a XEP-0128 form.
        info.append(Form.with_form_type("result", slots.UPLOAD, [
            Field("max-file-size", values=[str(self.settings.max_file_bytes)])]).to_element())
        return info

    async def _slot(self, st: Stanza, request: etree._Element) -> etree._Element:
        owner = st.from_
        if owner.local is None or owner.domain not in self.domains:
            raise StanzaError(Condition.FORBIDDEN, "uploads are for local users")
        filename = slots.safe_filename(request.get("filename") or "")
        try:
            size = int(request.get("size") or "")
        except ValueError:
            raise StanzaError(Condition.BAD_REQUEST, "a slot needs a size in bytes") from None
        if size <= 0:
            raise StanzaError(Condition.BAD_REQUEST, "a slot needs a size in bytes")
        limit = self.settings.max_file_bytes
        if size > limit:
            # §4: not-acceptable, with the maximum size.
            detail = builders.element(slots.UPLOAD, "file-too-large")
            etree.SubElement(detail, f"{{{slots.UPLOAD}}}max-size").text = str(limit)
            raise StanzaError(Condition.NOT_ACCEPTABLE, f"the largest file is {limit} bytes",
                              app=detail)
        now = self.clock()
        used = await self.store.bytes_used(str(owner.bare), now - self.settings.slot_timeout)
        if used + size > self.settings.quota_bytes:
            raise StanzaError(Condition.RESOURCE_CONSTRAINT,
                              f"upload quota reached ({self.settings.quota_bytes} bytes); "
                              "old files expire after a while")
        base = self._base_url()
        if base is None:
            raise StanzaError(Condition.SERVICE_UNAVAILABLE, "the upload listener is not ready")
        record = UploadRecord(slots.new_slot_id(), str(owner.bare), filename, size,
                              slots.media_type(request.get("content-type")), now)
        await self.store.add(record)
        url = base + slots.url_path(record.slot_id, filename)
        slot = builders.element(slots.UPLOAD, "slot")
        put = etree.SubElement(slot, f"{{{slots.UPLOAD}}}put", url=url)
        auth = slots.sign(self.files.secret, record.slot_id, size, record.content_type)
        etree.SubElement(put, f"{{{slots.UPLOAD}}}header", name="Authorization").text = \
            f"Bearer {auth}"
        etree.SubElement(slot, f"{{{slots.UPLOAD}}}get", url=url)
        return slot

    def _base_url(self) -> str | None:
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/")
        for kind in KINDS:
            for listener in self.listeners:
                if listener.name == kind:
                    host = listener.address
                    if host in ("0.0.0.0", "::"):
                        host = self.domain
                    elif ipaddress.ip_address(host).version == 6:
                        host = f"[{host}]"
                    scheme = "https" if kind == "upload_tls" else "http"
                    return f"{scheme}://{host}:{listener.bound_port}"
        return None

    # --- HTTP ---------------------------------------------------------------------------

    async def _serve_plain(self, stream: trio.abc.Stream, peer: str) -> None:
        await serve_http(stream, self.files.respond, timeout=HTTP_TIMEOUT,
                         max_body=self.settings.max_file_bytes)

    async def _serve_tls(self, stream: trio.abc.Stream, peer: str) -> None:
        if self.tls is None:
            await stream.aclose()
            return
        secured = trio.SSLStream(stream, self.tls, server_side=True)
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT):
                await secured.do_handshake()
        except (trio.BrokenResourceError, trio.TooSlowError, ssl.SSLError, OSError):
            await stream.aclose()
            return
        await self._serve_plain(secured, peer)

    # --- expiry -------------------------------------------------------------------------

    async def run(self) -> None:
        if not self.enabled:
            return
        period = min(max(self.settings.expire_after / 4, 0.2), 3600.0)
        while True:
            try:
                await self.expire()
            except Exception:
                self.log.exception("expiring uploads")
            await trio.sleep(period)

    async def expire(self) -> int:
        """Delete files older than ``expire_after`` and slots never used; how many."""
        now = self.clock()
        removed = 0
        while True:
            batch = await self.store.expired(
                uploaded_before=now - self.settings.expire_after,
                granted_before=now - self.settings.slot_timeout - HTTP_TIMEOUT)
            for record in batch:
                await self.files.remove(record)
            removed += len(batch)
            if len(batch) < 500:
                return removed

