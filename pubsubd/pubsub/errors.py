"""Domain errors of the publish-subscribe core.

They carry condition *names* only; the XMPP glue owns the single table that turns them into
``<error/>`` elements (stanza condition, pubsub#errors child, error type).
"""

from __future__ import annotations

from collections.abc import Sequence


class PubSubError(Exception):
    """A use case refused, described as XEP-0060 describes it.

    ``condition`` is an RFC 6120 §8.3.3 stanza error condition ("item-not-found", "forbidden",
    ...); ``pubsub_condition`` the optional application condition of XEP-0060 §11 /
    XEP-0248 ("closed-node", "presence-subscription-required", ...). ``feature`` accompanies
    ``unsupported``; ``redirect`` accompanies ``gone``/``redirect``.
    """

    def __init__(
        self,
        condition: str,
        pubsub_condition: str | None = None,
        text: str | None = None,
        *,
        feature: str | None = None,
        redirect: str | None = None,
    ) -> None:
        super().__init__(text or pubsub_condition or condition)
        self.condition = condition
        self.pubsub_condition = pubsub_condition
        self.text = text
        self.feature = feature
        self.redirect = redirect

    def __repr__(self) -> str:
        extra = f", {self.pubsub_condition!r}" if self.pubsub_condition else ""
        return f"PubSubError({self.condition!r}{extra})"


class FormError(PubSubError):
    """A data form that names unknown fields or carries values that do not validate."""

    def __init__(self, condition: str, fields: Sequence[str], pubsub_condition: str | None = None):
        self.fields = tuple(fields)
        super().__init__(
            condition, pubsub_condition, text="invalid field(s): " + ", ".join(self.fields)
        )


def node_not_found(node: str) -> PubSubError:
    # XEP-0060 §6.1.3.12, §7.1.3.3, §8.2.3.5, ...: one condition for every use case.
    return PubSubError("item-not-found", text=f"no node {node!r}")


def unsupported(feature: str) -> PubSubError:
    return PubSubError("feature-not-implemented", "unsupported", feature=feature)
