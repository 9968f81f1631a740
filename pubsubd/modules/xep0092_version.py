"""XEP-0092 Software Version of the server.

The operating system is left out unless configured (§2 makes it optional): it tells an
attacker more than it tells a user.
"""

from __future__ import annotations

import platform

from lxml import etree

from pubsubd import ns
from pubsubd.core.module import Module
from pubsubd.core.router import Router, Stanza
from pubsubd.xml import builders

QUERY = ns.clark(ns.VERSION, "query")


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("pubsubd")
    except PackageNotFoundError:
        return "0.0.0"


class VersionModule(Module):
    name = "version"
    features = (ns.VERSION,)

    def __init__(self, *, router: Router, show_os: bool = False) -> None:
        super().__init__()
        self.router = router
        self.show_os = show_os

    def setup(self) -> None:
        self.router.add_iq_handler("host", "get", QUERY, self.answer)

    async def answer(self, st: Stanza) -> etree._Element:
        query = builders.element(ns.VERSION, "query")
        etree.SubElement(query, ns.clark(ns.VERSION, "name")).text = "pubsubd"
        etree.SubElement(query, ns.clark(ns.VERSION, "version")).text = version()
        if self.show_os:
            etree.SubElement(query, ns.clark(ns.VERSION, "os")).text = platform.system()
        return query
