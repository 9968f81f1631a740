"""XEP-0202 Entity Time: UTC time and offset, in XEP-0082 format."""

from __future__ import annotations

import datetime

from lxml import etree

from pubsubd import ns
from pubsubd.core.module import Module
from pubsubd.core.router import Router, Stanza
from pubsubd.xml import builders

TIME = ns.clark(ns.TIME, "time")


class TimeModule(Module):
    name = "time"
    features = (ns.TIME,)

    def __init__(self, *, router: Router) -> None:
        super().__init__()
        self.router = router

    def setup(self) -> None:
        self.router.add_iq_handler("host", "get", TIME, self.answer)

    async def answer(self, st: Stanza) -> etree._Element:
        now = datetime.datetime.now(datetime.UTC)
        el = builders.element(ns.TIME, "time")
        etree.SubElement(el, ns.clark(ns.TIME, "tzo")).text = "+00:00"
        etree.SubElement(el, ns.clark(ns.TIME, "utc")).text = (
            now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
        )
        return el
