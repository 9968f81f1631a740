"""XEP-0060 Publish-Subscribe over XMPP: the ``pubsub.<domain>`` component and the glue PEP
reuses (requests table, handlers, error table, notifications, disco)."""

from __future__ import annotations

from .component import PubSubComponent

__all__ = ["PubSubComponent"]
