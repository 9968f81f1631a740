"""The bench's rounds: servers measured several times, taking turns, reported as the mean of
each figure with every round's value noted."""

from __future__ import annotations

from bench.measure import ScenarioResult
from bench.run import combine_rounds, turn_order


def result(server: str, per_cpu: float | None, error: str | None = None) -> ScenarioResult:
    values = {} if per_cpu is None else {"msgs_per_s": per_cpu / 2, "msgs_per_cpu_s": per_cpu}
    return ScenarioResult("messages", server, values=values, notes=["50 pairs"], error=error)


def test_one_round_is_reported_as_measured() -> None:
    measured = [result("pubsubd", 100.0)]
    assert combine_rounds([measured]) == measured


def test_rounds_are_averaged_per_server_and_failed_rounds_left_out() -> None:
    rounds = [[result("pubsubd", 20_000.0), result("pubsubd (defaults)", 14_000.0)],
              [result("pubsubd", 22_000.0), result("pubsubd (defaults)", None, "timeout")],
              [result("pubsubd", 18_000.0), result("pubsubd (defaults)", 16_000.0)]]
    plain, defaults = combine_rounds(rounds)
    assert (plain.server, defaults.server) == ("pubsubd", "pubsubd (defaults)")
    assert plain.values == {"msgs_per_s": 10_000.0, "msgs_per_cpu_s": 20_000.0}
    assert defaults.values["msgs_per_cpu_s"] == 15_000.0
    assert plain.notes[-1] == ("mean of 3 rounds (servers taking turns); msgs_per_cpu_s, each "
                               "round: 20,000, 22,000, 18,000")
    assert defaults.notes[-1].endswith("14,000, 16,000; 1 round(s) failed")


def test_a_scenario_that_failed_in_every_round_keeps_its_error() -> None:
    rounds = [[result("ejabberd", None, "no login")], [result("ejabberd", None, "no login")]]
    (only,) = combine_rounds(rounds)
    assert only.error == "no login"


def test_servers_take_every_place_in_turn() -> None:
    names = ["pubsubd", "pubsubd-defaults", "ejabberd"]
    orders = [turn_order(names, turn) for turn in range(6)]
    assert orders[0] == names
    assert orders[1] == ["pubsubd-defaults", "ejabberd", "pubsubd"]
    assert orders[3] == names
    for place in range(3):  # each server first, second and third twice in six rounds
        assert sorted(order[place] for order in orders) == sorted(names * 2)
    assert turn_order([], 4) == []
