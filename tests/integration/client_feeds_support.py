"""What the real-client tests share: a pubsubd that fetches feeds from a local web server.

Every test follows its own feed (one path per test) under its own account, so one server serves
a whole test module. A feed's entries have distinctive titles that the tests look for on the
client's screen and in its own record.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from xml.sax.saxutils import escape

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feeds_support import ThreadedFeedServer  # noqa: E402
from harness import ServerProcess  # noqa: E402

DOMAIN = "localhost"
SERVICE = f"pubsub.{DOMAIN}"
# The service's command contact: a JID with a localpart, which every client accepts.
COMMAND_CONTACT = f"feeds@{SERVICE}"
FEED_TITLE = "Harbour News"
FIRST_ENTRY = "Lighthouse keeper retires after forty years"
NEXT_ENTRY = "Winter ferry timetable published"

FEEDS_CONFIG = {
    "allow_hosts": ["127.0.0.1"],  # the local web server is not a public host
    # Polls happen on subscribing and when a test forces one, never behind its back.
    "default_interval": 3600.0,
    "min_interval": 1.0,
    "max_interval": 3600.0,
    "host_spacing": 0.0,
    "first_poll": "last",
    "first_poll_count": 1,
}


def is_feed_contact(jid: str) -> bool:
    """A feed's own contact: ``<name>@pubsub.<domain>``, not the command contact."""
    return jid.endswith(f"@{SERVICE}") and jid != COMMAND_CONTACT


def rss(web: ThreadedFeedServer, path: str, titles: Sequence[str]) -> str:
    """An RSS 2.0 document with entries (newest first) titled ``titles``, linking to pages of
    the same web server."""
    items = "".join(
        f"<item><title>{escape(title)}</title><link>{web.url(f'{path}/{n}.html')}</link>"
        f"<guid isPermaLink='false'>{path}-{n}</guid>"
        f"<pubDate>{formatdate(1_700_000_000 + 3600 * n, usegmt=True)}</pubDate>"
        "<description>The whole story, as told on the harbour office board.</description></item>"
        for n, title in reversed(list(enumerate(reversed(titles))))
    )
    return (f"<?xml version='1.0'?><rss version='2.0'><channel><title>{FEED_TITLE}</title>"
            f"<link>{web.url('/')}</link><description>News from the harbour</description>"
            f"{items}</channel></rss>")


@dataclass
class FeedWorld:
    server: ServerProcess
    web: ThreadedFeedServer

    def new_feed(self, name: str) -> str:
        """Serve a feed at ``/<name>.xml`` whose latest entry is :data:`FIRST_ENTRY`."""
        self.publish(name, [FIRST_ENTRY])
        return self.web.url(f"/{name}.xml")

    def publish(self, name: str, titles: Sequence[str]) -> None:
        self.web.set(f"/{name}.xml", rss(self.web, f"/{name}", titles),
                     content_type="application/rss+xml")

    def refresh(self, name: str) -> None:
        """Make the server poll the feed now (the control socket's ``feeds refresh``)."""
        self.server.cli("feeds", "refresh", self.web.url(f"/{name}.xml"))

    @property
    def certificate(self) -> Path:
        return self.server.workdir / "var" / "tls" / "selfsigned.crt"


@contextmanager
def feed_world(workdir: Path) -> Iterator[FeedWorld]:
    with ThreadedFeedServer() as web:
        server = ServerProcess(workdir, domain=DOMAIN, extra={"feeds": FEEDS_CONFIG})
        server.start()
        try:
            yield FeedWorld(server, web)
        finally:
            if server.alive():
                server.kill()
