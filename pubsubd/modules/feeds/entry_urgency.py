"""Each reader's choice for chat-type feed entries on a sleeping phone: urgent or batched.

Under Client State Indication (XEP-0352) a client in the background is spared what can wait,
but a chat message with a body goes out at once — a person may be waiting for it. A feed
entry is a chat message nobody is waiting for, so it is *batched* by default: held while the
client is inactive, like a headline, and delivered in order when the reader opens the app.
A phone that follows a few busy feeds would otherwise wake its radio for every entry, which
is exactly the battery drain CSI exists to avoid. A reader who wants entries the moment they
appear says ``urgent`` to the feeds contact.

The choice is kept in the reader's XEP-0049 private storage (the per-account settings store
the server already keeps, exports and forgets with the account), as
``<delivery xmlns='urn:pubsubd:feeds:delivery' entries='urgent|batched'/>``.
"""

from __future__ import annotations

from lxml import etree

from pubsubd.jid import JID, InvalidJID
from pubsubd.storage.interfaces import PrivateStore

NAMESPACE = "urn:pubsubd:feeds:delivery"
NAME = "delivery"
URGENT = "urgent"
BATCHED = "batched"
CHOICES = (URGENT, BATCHED)
DEFAULT = BATCHED
# Our one fragment must fit even when the reader's clients filled their private storage.
_MAX_ENTRIES = 1 << 20
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


class EntryUrgency:
    """Reads (once per reader, then from memory) and writes the choice."""

    def __init__(self, store: PrivateStore) -> None:
        self.store = store
        self._known: dict[str, str] = {}

    async def choice(self, user: str) -> str:
        """``urgent`` or ``batched`` for the bare JID ``user``."""
        known = self._known.get(user)
        if known is not None:
            return known
        choice = DEFAULT
        try:
            data = await self.store.get(JID.parse(user), NAMESPACE, NAME)
        except InvalidJID:
            data = None
        if data:
            try:
                value = etree.fromstring(data, _PARSER).get("entries")
            except etree.XMLSyntaxError:
                value = None
            if value in CHOICES:
                choice = value
        self._known[user] = choice
        return choice

    async def urgent(self, user: str) -> bool:
        return await self.choice(user) == URGENT

    async def set(self, user: str, choice: str) -> None:
        assert choice in CHOICES
        el = etree.Element(etree.QName(NAMESPACE, NAME).text, nsmap={None: NAMESPACE})
        el.set("entries", choice)
        await self.store.put(JID.parse(user), [(NAMESPACE, NAME, etree.tostring(el))],
                             _MAX_ENTRIES)
        self._known[user] = choice


def describe(choice: str) -> str:
    if choice == URGENT:
        return ("Feed entries are urgent: they reach your phone at once, even while its app "
                "is in the background. Say “batched” to have them wait until you open it.")
    return ("Feed entries are batched: while your app is in the background they wait, and "
            "arrive together when you open it. Say “urgent” to get each one at once.")
