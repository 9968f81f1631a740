"""Protocol modules, one per RFC section or XEP; :func:`default_modules` lists what loads."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pubsubd.core.module import Module


import importlib

# "module path:class name", in load order. Each entry is one protocol feature.
MODULES = [
    "pubsubd.modules.xep0030_disco:DiscoModule",
    "pubsubd.modules.xep0199_ping:PingModule",
    "pubsubd.modules.xep0092_version:VersionModule",
    "pubsubd.modules.xep0202_time:TimeModule",
    "pubsubd.modules.xep0077_register:RegisterModule",
    "pubsubd.modules.xep0050_commands:CommandsModule",
    "pubsubd.modules.xep0133_admin:AdminModule",
    "pubsubd.modules.metrics_http:MetricsModule",
    "pubsubd.modules.control_socket:ControlSocketModule",
    "pubsubd.modules.s2s:S2SModule",  # federation: the router's remote side, s2s listener
    "pubsubd.modules.rfc6121_roster:RosterModule",
    "pubsubd.modules.rfc6121_presence:PresenceModule",
    "pubsubd.modules.xep0160_offline:OfflineModule",
    "pubsubd.modules.xep0191_blocking:BlockingModule",
    "pubsubd.modules.xep0280_carbons:CarbonsModule",
    "pubsubd.modules.xep0115_caps:CapsModule",
    "pubsubd.modules.xep0054_vcard:VCardModule",
    "pubsubd.modules.xep0012_last:LastActivityModule",
    "pubsubd.modules.xep0049_private:PrivateStorageModule",
    "pubsubd.modules.xep0313_mam:MamModule",
    "pubsubd.modules.xep0060_pubsub:PubSubComponent",
    "pubsubd.modules.xep0045_muc:MucComponent",  # conference.<domain>, a component like pubsub
    "pubsubd.modules.xep0163_pep:PepModule",
    "pubsubd.modules.feeds_service:FeedsModule",  # after pubsub: feeds are its nodes
    "pubsubd.modules.service_admin_commands:ServiceAdminModule",  # after feeds: its admin
]


def default_modules() -> list[type[Module]]:
    classes = []
    for entry in MODULES:
        path, _, name = entry.partition(":")
        classes.append(getattr(importlib.import_module(path), name))
    return classes
