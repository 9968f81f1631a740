"""XEP-0363 HTTP File Upload against the real server: slots over XMPP, files over HTTP(S),
with slixmpp's upload plugin and by hand with httpx."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from harness import ServerProcess, connect, disconnect, reserved_port, run
from slixmpp.exceptions import IqError

from .pubsub_helpers import raw_iq

UPLOAD = "urn:xmpp:http:upload:0"
SERVICE = "upload.localhost"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200))


def upload_server(workdir: Path, *, tls: bool, **settings: Any) -> ServerProcess:
    """A server with a plain upload listener and, with ``tls``, an upload_tls one too; then
    clients are sent to the plain one through ``public_url`` (the TLS certificate is
    self-signed), else the URL is derived from the plain listener."""
    # Only the public URL needs a port before the start; the other listeners bind port 0.
    upload_port = reserved_port() if tls else 0
    if tls:
        settings["public_url"] = f"http://127.0.0.1:{upload_port}/"
    proc = ServerProcess(workdir, extra={"upload": {"max_file_bytes": 1000,
                                                    "quota_bytes": 1500, **settings}})
    proc.config["listeners"].append({"kind": "upload", "address": "127.0.0.1",
                                     "port": upload_port})
    if tls:
        proc.config["listeners"].append({"kind": "upload_tls", "address": "127.0.0.1",
                                         "port": 0})
    proc.config_path.write_text(yaml.safe_dump(proc.config))
    proc.start()
    proc.upload_ports = (proc.port("upload"),  # type: ignore[attr-defined]
                         proc.ports.get("upload_tls", 0))
    return proc


@pytest.fixture(scope="module")
def uploads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = upload_server(tmp_path_factory.mktemp("upload"), tls=True)
    try:
        yield proc
    finally:
        if proc.alive():
            proc.kill()


async def request_slot(client: Any, filename: str, size: int,
                       content_type: str | None = None) -> tuple[str, dict[str, str], str]:
    """(PUT URL, PUT headers, GET URL) of a new slot."""
    ctype = f" content-type='{content_type}'" if content_type else ""
    answer = await raw_iq(client, SERVICE, "get", f"<request xmlns='{UPLOAD}' "
                          f"filename='{filename}' size='{size}'{ctype}/>")
    slot = answer.find(f"{{{UPLOAD}}}slot")
    put, get = slot.find(f"{{{UPLOAD}}}put"), slot.find(f"{{{UPLOAD}}}get")
    headers = {h.get("name"): h.text for h in put.iter(f"{{{UPLOAD}}}header")}
    return put.get("url"), headers, get.get("url")


async def slot_error(client: Any, size: int) -> tuple[str, Any]:
    try:
        await request_slot(client, "big.bin", size)
    except IqError as exc:
        error = exc.iq.xml.find("{jabber:client}error")
        condition = next(c.tag.split("}")[1] for c in error
                         if c.tag.startswith("{urn:ietf:params:xml:ns:xmpp-stanzas}")
                         and not c.tag.endswith("}text"))
        return condition, error
    raise AssertionError("the slot was granted")


def test_slixmpp_uploads_and_anyone_downloads(uploads: ServerProcess) -> None:
    jid = uploads.add_user("sender")

    async def scenario() -> None:
        client = await connect(uploads, jid, plugins=("xep_0030", "xep_0363"))
        plugin = client.plugin["xep_0363"]
        service = await plugin.find_upload_service()  # server disco#items → disco#info (§3)
        assert service is not None and service["from"] == SERVICE
        url = await plugin.upload_file("photo.png", size=len(PNG), content_type="image/png",
                                       input_file=io.BytesIO(PNG), domain=SERVICE)
        await disconnect(client)
        async with httpx.AsyncClient() as http:
            reply = await http.get(url)  # the GET URL needs no credentials
        assert reply.status_code == 200 and reply.content == PNG
        assert reply.headers["content-type"] == "image/png"
        assert reply.headers["content-disposition"].startswith("inline")
        assert reply.headers["x-content-type-options"] == "nosniff"

    run(scenario())


def test_put_needs_the_slot_and_unsafe_types_download(uploads: ServerProcess) -> None:
    jid = uploads.add_user("careful")
    page = b"<html><script>alert(1)</script></html>"

    async def scenario() -> None:
        client = await connect(uploads, jid)
        info = await raw_iq(client, SERVICE, "get",
                            "<query xmlns='http://jabber.org/protocol/disco#info'/>")
        assert info.find(f".//{{http://jabber.org/protocol/disco#info}}feature[@var='{UPLOAD}']") \
            is not None
        sizes = [v.text for f in info.iter("{jabber:x:data}field")
                 if f.get("var") == "max-file-size" for v in f.iter("{jabber:x:data}value")]
        assert sizes == ["1000"]
        put_url, headers, get_url = await request_slot(client, "page.html", len(page), "text/html")
        plain, secure = uploads.upload_ports  # type: ignore[attr-defined]
        assert put_url.startswith(f"http://127.0.0.1:{plain}/upload/")
        assert set(headers) == {"Authorization"}
        async with httpx.AsyncClient() as http:
            # XEP-0363 §5: only with the slot's headers, exactly the announced size, once.
            assert (await http.put(put_url, content=page)).status_code == 403
            forged = {"Authorization": headers["Authorization"] + "x"}
            assert (await http.put(put_url, content=page, headers=forged)).status_code == 403
            longer = page + b"!"
            assert (await http.put(put_url, content=longer, headers=headers)).status_code == 400
            assert (await http.get(get_url)).status_code == 404  # nothing stored yet
            typed = {**headers, "Content-Type": "text/html"}
            assert (await http.put(put_url, content=page, headers=typed)).status_code == 201
            assert (await http.put(put_url, content=page, headers=headers)).status_code == 409
            served = await http.get(get_url)
            assert served.content == page
            # A browser must not run it in the upload origin.
            assert served.headers["content-type"] == "application/octet-stream"
            assert served.headers["content-disposition"] == "attachment; filename*=UTF-8''page.html"
            assert served.headers["x-content-type-options"] == "nosniff"
            # The same file over the TLS listener.
            tls_url = get_url.replace(f"http://127.0.0.1:{plain}", f"https://127.0.0.1:{secure}")
        async with httpx.AsyncClient(verify=False) as https:
            assert (await https.get(tls_url)).content == page
        await disconnect(client)

    run(scenario())


def test_size_limit_and_quota(uploads: ServerProcess) -> None:
    jid = uploads.add_user("hoarder")

    async def scenario() -> None:
        client = await connect(uploads, jid)
        condition, error = await slot_error(client, 1001)
        assert condition == "not-acceptable" and error.get("type") == "modify"
        assert error.findtext(f"{{{UPLOAD}}}file-too-large/{{{UPLOAD}}}max-size") == "1000"
        put_url, headers, _ = await request_slot(client, "a.bin", 900)
        async with httpx.AsyncClient() as http:
            stored = await http.put(put_url, content=b"a" * 900, headers=headers)
            assert stored.status_code == 201
        await request_slot(client, "b.bin", 500)  # a pending slot reserves its size too
        condition, error = await slot_error(client, 200)  # 900 + 500 + 200 > 1500
        assert condition == "resource-constraint" and error.get("type") == "wait"
        await disconnect(client)

    run(scenario())


def test_old_files_expire(tmp_path: Path) -> None:
    proc = upload_server(tmp_path, tls=False, expire_after=1.0)
    try:
        jid = proc.add_user("fleeting")

        async def scenario() -> str:
            client = await connect(proc, jid)
            put_url, headers, get_url = await request_slot(client, "note.txt", 5, "text/plain")
            await disconnect(client)
            port = proc.upload_ports[0]  # type: ignore[attr-defined]
            assert put_url.startswith(f"http://127.0.0.1:{port}/upload/")  # derived
            async with httpx.AsyncClient() as http:
                stored = await http.put(put_url, content=b"hello", headers=headers)
                assert stored.status_code == 201
                assert (await http.get(get_url)).text == "hello"
            return get_url

        get_url = run(scenario())
        deadline = time.monotonic() + 15
        while httpx.get(get_url).status_code == 200:  # the expiry task removes it
            assert time.monotonic() < deadline, "the file did not expire"
            time.sleep(0.1)
        assert httpx.get(get_url).status_code == 404
        assert list((tmp_path / "var" / "upload" / "files").iterdir()) == []
    finally:
        proc.kill()
