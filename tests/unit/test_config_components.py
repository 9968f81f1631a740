"""The ``components`` and ``component_of`` settings (XEP-0114), and their one-line errors."""

from __future__ import annotations

import pytest

from pubsubd.config import ComponentConfig, ConfigError, loads


def test_components_are_read_as_settings() -> None:
    config = loads("components:\n  bridge.localhost: {secret: s, subdomains: true}\n"
                   "listeners: [{kind: component, address: 127.0.0.1, port: 5347}]\n")
    assert config.components == {"bridge.localhost": ComponentConfig(secret="s",
                                                                      subdomains=True)}
    assert config.listeners[0].kind == "component"


def test_component_of_is_read() -> None:
    config = loads("component_of: {host: 10.0.0.1, port: 5347, domain: pubsub.example.org, "
                   "secret: s}\n")
    assert config.component_of is not None
    assert (config.component_of.domain, config.component_of.port) == ("pubsub.example.org", 5347)


@pytest.mark.parametrize(("text", "key"), [
    ("components: {bridge.localhost: {}}", "components.bridge.localhost.secret"),
    ("components: {bridge.localhost: {secret: s, colour: red}}",
     "components.bridge.localhost.colour"),
    ("components: {bridge.localhost: {secret: s, max_connections: 0}}",
     "components.bridge.localhost.max_connections"),
    ("components: {localhost: {secret: s}}", "components.localhost"),
    ("components: {'a@b': {secret: s}}", "components.a@b"),
    ("component_of: {secret: s}", "component_of.domain"),
    ("component_of: {domain: pubsub.example.org}", "component_of.secret"),
])
def test_mistakes_name_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        loads(text)
    assert str(err.value).startswith(key + ":")
