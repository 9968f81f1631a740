"""Config loading: typed, strict, one clear line naming the key for every mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from pubsubd.config import Config, ConfigError, load, loads


def error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        loads(text)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults() -> None:
    config = loads("")
    assert isinstance(config, Config)
    assert config.domains == ("localhost",)
    assert config.limits.max_stanza_bytes == 256 * 1024
    assert config.tls.require_c2s is True
    assert config.registration.enabled is False


def test_values_are_read() -> None:
    config = loads("domains: [example.org]\n"
                   "limits: {connections_per_ip: 7, handshake_timeout: 2}\n")
    assert config.primary_domain == "example.org"
    assert config.limits.connections_per_ip == 7 and config.limits.handshake_timeout == 2.0


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("colour: blue", "colour: unknown key"),
        ("limits: {stanza_size: 5}", "limits.stanza_size: unknown key"),
        ("limits: {max_stanza_bytes: big}", "limits.max_stanza_bytes: expected a whole number"),
        ("limits: {connections_per_ip: -1}", "limits.connections_per_ip: must not be negative"),
        ("registration: {enabled: 'yes'}", "registration.enabled: expected true or false"),
        ("domains: example.org", "domains: expected a list"),
        ("domains: ['not a domain!']", "domains[0]"),
        ("listeners: [{kind: c2s, address: localhost, port: 5222}]", "listeners[0].address"),
        ("listeners: [{kind: gopher}]", "listeners[0].kind: must be one of"),
        ("listeners: [{port: 70000}]", "listeners[0].port"),
        ("listeners: [{address: 0.0.0.0}]\ntls: {require_c2s: false}", "tls.require_c2s"),
        ("tls: {certificate: /nonexistent.pem, key: /nonexistent.key}", "tls.certificate"),
        ("tls: {certificate: /nonexistent.pem}", "tls:"),
        ("admins: [localhost]", "admins[0]"),
        ("limits: {max_stanza_bytes: 100}", "limits.max_stanza_bytes"),
        ("limits: [1, 2]", "limits: expected a mapping"),
        ("domains: [unclosed", "YAML syntax error"),
    ],
)
def test_mistakes_name_the_key(text: str, key: str) -> None:
    assert key in error(text)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "absent.yaml")
    assert "cannot read the config file" in str(info.value)


def test_existing_certificate_is_accepted(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("y")
    config = loads(f"tls: {{certificate: {cert}, key: {key}}}")
    assert config.tls.certificate == str(cert)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("feeds: {allow_hosts: [not_a_host/99]}", "feeds.allow_hosts[0]"),
        ("s2s: {allow_hosts: ['10.0.0.0/8', 'bad host']}", "s2s.allow_hosts[1]"),
        ("feeds: {min_interval: 900, max_interval: 600}", "feeds.min_interval"),
        ("registration: {rate_window: 0}", "registration.rate"),
    ],
)
def test_hardening_settings_are_checked(text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        loads(text)


def test_allow_lists_take_hosts_addresses_and_networks() -> None:
    config = loads("feeds: {allow_hosts: [feeds.example.org, 127.0.0.1, '192.168.0.0/16', '::1']}")
    assert len(config.feeds.allow_hosts) == 4
