"""Settings of server information (XEP-0157, XEP-0215, XEP-0092) and of HTTP upload."""

from __future__ import annotations

import pytest

from pubsubd.config import ConfigError, loads


def test_defaults_offer_nothing_and_hide_the_os() -> None:
    config = loads("domains: [example.org]")
    assert config.server_info.external_services == ()
    assert config.server_info.contacts.abuse == ()
    assert not config.server_info.version_shows_os
    assert config.upload.subdomain == "upload" and config.upload.public_url is None


def test_external_services_are_checked() -> None:
    config = loads("server_info: {external_services: [{type: turn, host: t.example.org, "
                   "secret: s, transport: udp}]}")
    (turn,) = config.server_info.external_services
    assert (turn.type, turn.port, turn.transport, turn.secret) == ("turn", 3478, "udp", "s")
    with pytest.raises(ConfigError, match="needs a host"):
        loads("server_info: {external_services: [{type: stun}]}")
    with pytest.raises(ConfigError, match="not both"):
        loads("server_info: {external_services: [{host: t, secret: s, password: p}]}")
    with pytest.raises(ConfigError, match="type"):
        loads("server_info: {external_services: [{host: t, type: ftp}]}")


def test_plain_upload_listener_only_on_loopback() -> None:
    loads("listeners: [{kind: upload, address: 127.0.0.1, port: 5281}]")
    loads("listeners: [{kind: upload_tls, address: 0.0.0.0, port: 5443}]")
    with pytest.raises(ConfigError, match="plain upload listener"):
        loads("listeners: [{kind: upload, address: 0.0.0.0, port: 5281}]")
