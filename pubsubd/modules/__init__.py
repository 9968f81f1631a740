"""Protocol modules, one per RFC section or XEP; :func:`default_modules` lists what loads."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pubsubd.core.module import Module


def default_modules() -> list[type[Module]]:
    from pubsubd.modules.xep0030_disco import DiscoModule
    from pubsubd.modules.xep0077_register import RegisterModule
    from pubsubd.modules.xep0092_version import VersionModule
    from pubsubd.modules.xep0199_ping import PingModule
    from pubsubd.modules.xep0202_time import TimeModule

    return [DiscoModule, PingModule, VersionModule, TimeModule, RegisterModule]
