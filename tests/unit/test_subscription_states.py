"""Every transition of RFC 6121 Appendix A (Tables 2–9), plus pre-approval (§3.4).

The expected tables are transcribed here independently of the module, in the RFC's own words.
"""

from __future__ import annotations

import pytest

from pubsubd.modules.rfc6121_subscription_states import (
    Direction,
    State,
    SubState,
    transition,
)

NAMES = {s.value: s for s in State}
ORDER = ["None", "None + Pending Out", "None + Pending In", "None + Pending Out+In", "To",
         "To + Pending In", "From", "From + Pending Out", "Both"]

# (route/deliver?, new state or "no state change"), in the RFC's row order.
RFC_TABLES: dict[tuple[Direction, str], list[tuple[bool, str]]] = {
    (Direction.OUTBOUND, "subscribe"): [  # Table 2
        (True, "None + Pending Out"), (True, "-"), (True, "None + Pending Out+In"), (True, "-"),
        (True, "-"), (True, "-"), (True, "From + Pending Out"), (True, "-"), (True, "-")],
    (Direction.OUTBOUND, "unsubscribe"): [  # Table 3
        (True, "-"), (True, "None"), (True, "-"), (True, "None + Pending In"), (True, "None"),
        (True, "None + Pending In"), (True, "-"), (True, "From"), (True, "From")],
    (Direction.OUTBOUND, "subscribed"): [  # Table 4 (pre-approval rows checked below)
        (False, "-"), (False, "-"), (True, "From"), (True, "From + Pending Out"), (False, "-"),
        (True, "Both"), (False, "-"), (False, "-"), (False, "-")],
    (Direction.OUTBOUND, "unsubscribed"): [  # Table 5
        (False, "-"), (False, "-"), (True, "None"), (True, "None + Pending Out"), (False, "-"),
        (True, "To"), (True, "None"), (True, "None + Pending Out"), (True, "To")],
    (Direction.INBOUND, "subscribe"): [  # Table 6
        (True, "None + Pending In"), (True, "None + Pending Out+In"), (False, "-"), (False, "-"),
        (True, "To + Pending In"), (False, "-"), (False, "-"), (False, "-"), (False, "-")],
    (Direction.INBOUND, "unsubscribe"): [  # Table 7
        (False, "-"), (False, "-"), (True, "None"), (True, "None + Pending Out"), (False, "-"),
        (True, "To"), (True, "None"), (True, "None + Pending Out"), (True, "To")],
    (Direction.INBOUND, "subscribed"): [  # Table 8
        (False, "-"), (True, "To"), (False, "-"), (True, "To + Pending In"), (False, "-"),
        (False, "-"), (False, "-"), (True, "Both"), (False, "-")],
    (Direction.INBOUND, "unsubscribed"): [  # Table 9
        (False, "-"), (True, "None"), (False, "-"), (True, "None + Pending In"), (True, "None"),
        (True, "None + Pending In"), (False, "-"), (True, "From"), (True, "From")],
}

CASES = [(direction, type_, ORDER[i], forward, new)
         for (direction, type_), rows in RFC_TABLES.items()
         for i, (forward, new) in enumerate(rows)]


@pytest.mark.parametrize(("direction", "type_", "existing", "forward", "new"), CASES)
def test_appendix_a_transition(direction: Direction, type_: str, existing: str, forward: bool,
                               new: str) -> None:
    old = SubState.of(NAMES[existing])
    outcome = transition(old, direction, type_)
    assert outcome.forward is forward
    expected = NAMES[existing] if new == "-" else NAMES[new]
    assert outcome.new.state is expected
    assert outcome.changed(old) is (new != "-" or outcome.new.approved)


def test_roster_fields_of_states() -> None:
    """A.1: what the roster shows (subscription, ask) for each of the nine states."""
    assert SubState.of(State.NONE_OUT_IN) == SubState("none", True, True)
    assert SubState.of(State.FROM_OUT) == SubState("from", True, False)
    assert SubState.of(State.TO_IN) == SubState("to", False, True)
    assert len({SubState.of(s) for s in State}) == 9


@pytest.mark.parametrize("existing", ["None", "None + Pending Out", "To"])
def test_outbound_subscribed_pre_approves(existing: str) -> None:
    """§3.4 / A.2.3 [1]: not routed, but remembered."""
    outcome = transition(SubState.of(NAMES[existing]), Direction.OUTBOUND, "subscribed")
    assert not outcome.forward and outcome.new.approved
    assert outcome.new.state is NAMES[existing]


@pytest.mark.parametrize(("existing", "after"), [
    ("None", "From"), ("None + Pending Out", "From + Pending Out"), ("To", "Both")])
def test_pre_approved_subscribe_is_accepted_at_once(existing: str, after: str) -> None:
    """A.3.1 [1]: auto-reply "subscribed", no delivery, and the approval is used up."""
    outcome = transition(SubState.of(NAMES[existing], approved=True), Direction.INBOUND,
                         "subscribe")
    assert outcome.new.state is NAMES[after]
    assert outcome.auto_reply == "subscribed" and not outcome.forward
    assert not outcome.new.approved


@pytest.mark.parametrize("existing", ["None", "None + Pending Out", "To"])
def test_outbound_unsubscribed_cancels_pre_approval(existing: str) -> None:
    """A.2.4 [1], §3.4.2."""
    outcome = transition(SubState.of(NAMES[existing], approved=True), Direction.OUTBOUND,
                         "unsubscribed")
    assert not outcome.new.approved and not outcome.forward


@pytest.mark.parametrize("existing", ["From", "From + Pending Out", "Both"])
def test_subscribe_from_subscriber_auto_replies(existing: str) -> None:
    """A.3.1 [2]: already subscribed, so the server answers "subscribed" itself."""
    outcome = transition(SubState.of(NAMES[existing]), Direction.INBOUND, "subscribe")
    assert outcome.auto_reply == "subscribed" and not outcome.forward


def test_inbound_unsubscribe_with_change_auto_replies() -> None:
    """A.3.2 [1]."""
    outcome = transition(SubState.of(State.BOTH), Direction.INBOUND, "unsubscribe")
    assert outcome.auto_reply == "unsubscribed"
    assert transition(SubState.of(State.TO), Direction.INBOUND, "unsubscribe").auto_reply is None


def test_inbound_unsubscribed_keeps_pre_approval() -> None:
    """§4.3.2: an "unsubscribed" answer to a probe must not cancel a pre-approval."""
    outcome = transition(SubState.of(State.TO, approved=True), Direction.INBOUND, "unsubscribed")
    assert outcome.new.state is State.NONE and outcome.new.approved


def test_not_a_subscription_type() -> None:
    with pytest.raises(ValueError):
        transition(SubState(), Direction.INBOUND, "available")
