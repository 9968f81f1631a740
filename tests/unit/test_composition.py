"""The composition root builds every module in process, in its load order, each with what it
needs handed in (no sockets are opened: only the constructors and ``setup`` run)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import trio

from pubsubd import ns
from pubsubd.app import Server
from pubsubd.config import loads
from pubsubd.core.module import Module
from pubsubd.modules.control_socket import ControlSocketModule
from pubsubd.modules.feeds.admin_commands import ServiceAdminModule
from pubsubd.modules.feeds.module import FeedsModule
from pubsubd.modules.metrics_http import MetricsModule
from pubsubd.modules.rfc6121_presence import PresenceModule
from pubsubd.modules.rfc6121_roster import RosterModule
from pubsubd.modules.xep0030_disco import DiscoModule
from pubsubd.modules.xep0050_commands import CommandsModule
from pubsubd.modules.xep0060_pubsub import PubSubComponent
from pubsubd.modules.xep0133_admin import NODE, AdminModule
from pubsubd.modules.xep0160_offline import OfflineModule
from pubsubd.modules.xep0163_pep import PepModule
from pubsubd.modules.xep0191_blocking import BlockingModule
from pubsubd.modules.xep0313_mam import MamModule

LOAD_ORDER = [
    "disco", "ping", "version", "time", "register", "commands", "admin", "metrics",
    "control_socket", "s2s", "components", "roster", "presence", "offline", "blocking",
    "carbons", "caps", "vcard", "last", "private", "mam", "push", "pubsub", "muc", "pep",
    "shared_state", "node_feeds", "websub_hub", "server_contacts", "external_services", "upload",
    "websub_subscriber", "feeds", "service_admin",
]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    config = loads(f"""
domains: [example.test]
data_dir: {tmp_path / "var"}
storage: {{path: {tmp_path / "var" / "db.sqlite3"}}}
admins: [admin@example.test]
control: {{socket: var/control.sock}}
""")
    srv = Server(config, base_dir=tmp_path)
    yield srv
    srv.services.stores.close()


M = TypeVar("M", bound=Module)


def module(server: Server, cls: type[M]) -> M:
    found = [m for m in server.modules if isinstance(m, cls)]
    assert len(found) == 1, cls
    return found[0]


def test_modules_load_in_order(server: Server) -> None:
    assert [m.name for m in server.modules] == LOAD_ORDER


def test_modules_share_the_services_of_the_root(server: Server) -> None:
    s = server.services
    roster = module(server, RosterModule)
    presence = module(server, PresenceModule)
    assert presence.roster is roster
    assert presence.store is s.stores.im is roster.store
    blocking = module(server, BlockingModule)
    assert blocking.presence is presence
    offline = module(server, OfflineModule)
    assert offline.presence is presence.view
    pubsub = module(server, PubSubComponent)
    pep = module(server, PepModule)
    assert pubsub.store is pep.store is s.stores.pubsub
    mam = module(server, MamModule)
    assert mam.store is s.stores.mam
    control = module(server, ControlSocketModule)
    assert control.path == server.services.base_dir / "var" / "control.sock"


def test_the_feed_modules_get_the_shared_stores_and_services(server: Server) -> None:
    s = server.services
    feeds = module(server, FeedsModule)
    pubsub = module(server, PubSubComponent)
    assert feeds.running and feeds.pubsub is pubsub
    assert feeds.roster is module(server, RosterModule)
    assert feeds.store is s.stores.feeds  # one feed store, the backend's
    assert feeds.poller.store is s.stores.feeds
    assert feeds.contact_store is s.stores.feed_contacts
    assert feeds.mark_store is s.stores.feed_marks
    assert feeds.manager is not None and feeds.manager.marks is s.stores.feed_marks
    admin = module(server, ServiceAdminModule)
    assert admin.feeds is feeds and admin.pubsub is pubsub
    assert admin.commands is module(server, CommandsModule)
    # The admin statistics hear of held notifications through the tracker's listeners.
    assert admin.stats.delivery.held in pubsub.service.catch_up.held_listeners


def test_modules_extend_each_other_through_typed_registries(server: Server) -> None:
    disco = module(server, DiscoModule)
    # MAM, private storage and PEP add account features; PEP its identity.
    assert {ns.MAM, ns.PRIVATE, ns.PUBSUB} <= disco.account_features
    assert ("pubsub", "pep") in disco.account_identities
    commands = module(server, CommandsModule)
    assert commands.registry.get(NODE + "add-user") is not None  # added by the admin module
    assert module(server, AdminModule).commands is commands
    # Control operations of the control socket itself, the admin module and the feeds.
    assert {"ops", "users", "stats"} <= set(server.services.control_ops)
    assert any(name.startswith("feeds.") for name in server.services.control_ops)
    assert "metrics" in server.services.listener_kinds
    assert ns.DISCO_INFO in server.services.disco.features


def test_failed_logins_reach_the_metrics_through_the_throttle(server: Server) -> None:
    assert module(server, MetricsModule).throttle is server.services.throttle
    registry = server.services.metrics.registry

    async def fail_twice() -> None:
        server.services.throttle.failure("192.0.2.1", "juliet")
        server.services.throttle.failure("192.0.2.1", "romeo")

    assert registry.get_sample_value("pubsubd_auth_failures_total") == 0
    trio.run(fail_twice)  # the throttle's clock is the trio clock
    assert registry.get_sample_value("pubsubd_auth_failures_total") == 2


def test_a_memory_backend_runs_the_feed_service(tmp_path: Path) -> None:
    config = loads(f"""
domains: [example.test]
data_dir: {tmp_path / "var"}
storage: {{backend: memory}}
""")
    srv = Server(config, base_dir=tmp_path)
    try:
        assert module(srv, FeedsModule).running
        assert not (tmp_path / "var" / "pubsubd.sqlite3").exists()
    finally:
        srv.services.stores.close()


def test_per_stanza_metrics_only_with_a_listener_that_serves_them(tmp_path: Path,
                                                                   server: Server) -> None:
    # Without a metrics listener nobody can read the stanza counters: nothing is told of
    # every stanza queued to a client, and notifications are counted once each by the sender.
    assert server.services.sessions.sent_observers == []
    admin = module(server, ServiceAdminModule)
    pubsub = module(server, PubSubComponent)
    assert pubsub.sender.delivered_listeners == [admin.stats.delivery.delivered]
    config = loads(f"""
domains: [example.test]
data_dir: {tmp_path / "var2"}
storage: {{path: {tmp_path / "var2" / "db.sqlite3"}}}
control: {{socket: var2/control.sock}}
listeners:
  - {{kind: c2s, address: 127.0.0.1, port: 0}}
  - {{kind: metrics, address: 127.0.0.1, port: 0}}
""")
    served = Server(config, base_dir=tmp_path)
    try:
        assert len(served.services.sessions.sent_observers) == 1
    finally:
        served.services.stores.close()
