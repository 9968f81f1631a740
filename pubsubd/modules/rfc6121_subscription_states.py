"""The presence subscription state machine of RFC 6121 Appendix A, as data.

Pure: no I/O, no XML. The presence module asks :func:`transition` what an outbound or inbound
subscription stanza does to the state of one (user, contact) pair, then performs the effects.
The nine states and the eight tables are copied from Appendix A (A.1–A.3) so that they can be
checked against the RFC line by line; pre-approval (§3.4) is the one extra bit of state.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum


class State(str, Enum):
    """RFC 6121 Appendix A.1: the nine subscription states, from the user's perspective."""

    NONE = "None"
    NONE_OUT = "None + Pending Out"
    NONE_IN = "None + Pending In"
    NONE_OUT_IN = "None + Pending Out+In"
    TO = "To"
    TO_IN = "To + Pending In"
    FROM = "From"
    FROM_OUT = "From + Pending Out"
    BOTH = "Both"


class Direction(str, Enum):
    OUTBOUND = "outbound"  # sent by the user (Appendix A.2)
    INBOUND = "inbound"  # received for the user (Appendix A.3)


SUBSCRIPTION_TYPES = frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed"})

# (subscription, pending out, pending in) of every state: what the roster item shows.
_PARTS: dict[State, tuple[str, bool, bool]] = {
    State.NONE: ("none", False, False),
    State.NONE_OUT: ("none", True, False),
    State.NONE_IN: ("none", False, True),
    State.NONE_OUT_IN: ("none", True, True),
    State.TO: ("to", False, False),
    State.TO_IN: ("to", False, True),
    State.FROM: ("from", False, False),
    State.FROM_OUT: ("from", True, False),
    State.BOTH: ("both", False, False),
}
_BY_PARTS = {parts: state for state, parts in _PARTS.items()}

S = State
# Each table maps the existing state to (route or deliver the stanza?, new state or None for
# "no state change"). "S.N." (should not) and "M.N." (must not) are both False here.
_TABLES: dict[tuple[Direction, str], dict[State, tuple[bool, State | None]]] = {
    # A.2.1 Table 2: outbound "subscribe"
    (Direction.OUTBOUND, "subscribe"): {
        S.NONE: (True, S.NONE_OUT), S.NONE_OUT: (True, None), S.NONE_IN: (True, S.NONE_OUT_IN),
        S.NONE_OUT_IN: (True, None), S.TO: (True, None), S.TO_IN: (True, None),
        S.FROM: (True, S.FROM_OUT), S.FROM_OUT: (True, None), S.BOTH: (True, None),
    },
    # A.2.2 Table 3: outbound "unsubscribe"
    (Direction.OUTBOUND, "unsubscribe"): {
        S.NONE: (True, None), S.NONE_OUT: (True, S.NONE), S.NONE_IN: (True, None),
        S.NONE_OUT_IN: (True, S.NONE_IN), S.TO: (True, S.NONE), S.TO_IN: (True, S.NONE_IN),
        S.FROM: (True, None), S.FROM_OUT: (True, S.FROM), S.BOTH: (True, S.FROM),
    },
    # A.2.3 Table 4: outbound "subscribed" (None, None + Pending Out, To: pre-approval, §3.4)
    (Direction.OUTBOUND, "subscribed"): {
        S.NONE: (False, None), S.NONE_OUT: (False, None), S.NONE_IN: (True, S.FROM),
        S.NONE_OUT_IN: (True, S.FROM_OUT), S.TO: (False, None), S.TO_IN: (True, S.BOTH),
        S.FROM: (False, None), S.FROM_OUT: (False, None), S.BOTH: (False, None),
    },
    # A.2.4 Table 5: outbound "unsubscribed"
    (Direction.OUTBOUND, "unsubscribed"): {
        S.NONE: (False, None), S.NONE_OUT: (False, None), S.NONE_IN: (True, S.NONE),
        S.NONE_OUT_IN: (True, S.NONE_OUT), S.TO: (False, None), S.TO_IN: (True, S.TO),
        S.FROM: (True, S.NONE), S.FROM_OUT: (True, S.NONE_OUT), S.BOTH: (True, S.TO),
    },
    # A.3.1 Table 6: inbound "subscribe"
    (Direction.INBOUND, "subscribe"): {
        S.NONE: (True, S.NONE_IN), S.NONE_OUT: (True, S.NONE_OUT_IN), S.NONE_IN: (False, None),
        S.NONE_OUT_IN: (False, None), S.TO: (True, S.TO_IN), S.TO_IN: (False, None),
        S.FROM: (False, None), S.FROM_OUT: (False, None), S.BOTH: (False, None),
    },
    # A.3.2 Table 7: inbound "unsubscribe"
    (Direction.INBOUND, "unsubscribe"): {
        S.NONE: (False, None), S.NONE_OUT: (False, None), S.NONE_IN: (True, S.NONE),
        S.NONE_OUT_IN: (True, S.NONE_OUT), S.TO: (False, None), S.TO_IN: (True, S.TO),
        S.FROM: (True, S.NONE), S.FROM_OUT: (True, S.NONE_OUT), S.BOTH: (True, S.TO),
    },
    # A.3.3 Table 8: inbound "subscribed"
    (Direction.INBOUND, "subscribed"): {
        S.NONE: (False, None), S.NONE_OUT: (True, S.TO), S.NONE_IN: (False, None),
        S.NONE_OUT_IN: (True, S.TO_IN), S.TO: (False, None), S.TO_IN: (False, None),
        S.FROM: (False, None), S.FROM_OUT: (True, S.BOTH), S.BOTH: (False, None),
    },
    # A.3.4 Table 9: inbound "unsubscribed"
    (Direction.INBOUND, "unsubscribed"): {
        S.NONE: (False, None), S.NONE_OUT: (True, S.NONE), S.NONE_IN: (False, None),
        S.NONE_OUT_IN: (True, S.NONE_IN), S.TO: (True, S.NONE), S.TO_IN: (True, S.NONE_IN),
        S.FROM: (False, None), S.FROM_OUT: (True, S.FROM), S.BOTH: (True, S.FROM),
    },
}

# §3.4 / A.2.3 [1]: an outbound "subscribed" in these states records a pre-approval instead.
_PRE_APPROVABLE = frozenset({S.NONE, S.NONE_OUT, S.TO})
# A.3.1 [1]: a pre-approved inbound "subscribe" is accepted at once.
_APPROVED_SUBSCRIBE: dict[State, State] = {S.NONE: S.FROM, S.NONE_OUT: S.FROM_OUT, S.TO: S.BOTH}


@dataclass(frozen=True, slots=True)
class SubState:
    """The subscription facts of one contact in one user's roster."""

    subscription: str = "none"  # none | to | from | both
    pending_out: bool = False  # ask='subscribe'
    pending_in: bool = False  # an inbound request waits for the user's answer
    approved: bool = False  # §3.4 pre-approval

    @classmethod
    def of(cls, state: State, approved: bool = False) -> SubState:
        subscription, pending_out, pending_in = _PARTS[state]
        return cls(subscription, pending_out, pending_in, approved)

    @property
    def state(self) -> State:
        return _BY_PARTS[(self.subscription, self.pending_out, self.pending_in)]

    @property
    def has_to(self) -> bool:
        return self.subscription in ("to", "both")

    @property
    def has_from(self) -> bool:
        return self.subscription in ("from", "both")


@dataclass(frozen=True, slots=True)
class Outcome:
    new: SubState
    forward: bool  # route (outbound) or deliver (inbound) the stanza
    auto_reply: str | None = None  # presence type the server sends back on the user's behalf

    def changed(self, old: SubState) -> bool:
        return self.new != old


def transition(old: SubState, direction: Direction, type_: str) -> Outcome:
    """What a subscription stanza of ``type_`` does to ``old`` (RFC 6121 Appendix A, §3.4)."""
    if type_ not in SUBSCRIPTION_TYPES:
        raise ValueError(f"not a subscription stanza type: {type_!r}")
    state = old.state
    forward, target = _TABLES[(direction, type_)][state]
    new = SubState.of(target, old.approved) if target is not None else old
    reply: str | None = None
    if direction is Direction.OUTBOUND:
        if type_ == "subscribed" and state in _PRE_APPROVABLE:
            new = replace(new, approved=True)  # §3.4.1: remember, do not route
        elif type_ == "unsubscribed" and state in _PRE_APPROVABLE:
            new = replace(new, approved=False)  # A.2.4 [1]: cancels a pre-approval (§3.4.2)
        if new.has_from:
            new = replace(new, approved=False)  # an approval is spent once granted
    else:
        if type_ == "subscribe":
            if old.approved and state in _APPROVED_SUBSCRIBE:
                # A.3.1 [1]: pre-approved, so answer "subscribed" without asking the user.
                new = SubState.of(_APPROVED_SUBSCRIBE[state])
                forward, reply = False, "subscribed"
            elif old.has_from:
                reply = "subscribed"  # A.3.1 [2]
        elif type_ == "unsubscribe" and forward:
            reply = "unsubscribed"  # A.3.2 [1]
    return Outcome(new, forward, reply)


def all_states() -> list[State]:
    return list(State)


__all__ = ["State", "Direction", "SubState", "Outcome", "transition", "SUBSCRIPTION_TYPES",
           "all_states"]
