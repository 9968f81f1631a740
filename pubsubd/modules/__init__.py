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
]


def default_modules() -> list[type[Module]]:
    classes = []
    for entry in MODULES:
        path, _, name = entry.partition(":")
        classes.append(getattr(importlib.import_module(path), name))
    return classes
