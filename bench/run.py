"""Run every scenario against pubsubd and Prosody in one go and write bench/RESULTS.md.

    python -m bench.run                      # defaults: a few minutes in all
    python -m bench.run --idle 2000 --duration 5 --only messages,idle
    python -m bench.run --servers pubsubd    # without Prosody (no comparison)
    python -m bench.run --servers pubsubd,pubsubd-postgres --only messages,fanout

Each server is started once with a generated loopback config in a temporary directory, its
accounts are created by in-band registration, then the scenarios run one after the other while
the server's own CPU time and RSS are read from /proc. Everything is bounded: every wait has a
deadline and the servers are stopped at the end, also on errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import (
    ejabberd,
    profile,
    prosody,
    report,
    scenario_core,
    scenario_feeds,
    scenario_presence,
    scenario_pubsub,
    scenario_scale,
)
from bench.loadgen import raise_fd_limit
from bench.measure import Metric, ScenarioResult
from bench.options import Options
from bench.servers import Pubsubd, PubsubdDefaults, PubsubdPostgres, ServerUnderTest

log = logging.getLogger("bench")

Runner = Callable[[ServerUnderTest, Options], ScenarioResult]


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    run: Runner
    metrics: tuple[Metric, ...]
    available: Callable[[ServerUnderTest], str | None] = lambda _server: None  # reason if not
    # A scenario of a feature the other servers lack: skipped on them without counting as a
    # failure of the run; ``available`` gives the reason shown in the report.
    only_for: str | None = None


def sized(name: str, run: Runner, **scale: float) -> Runner:
    """``run`` with some sizes of the options multiplied, reported under ``name``."""
    def runner(server: ServerUnderTest, opts: Options) -> ScenarioResult:
        changes = {key: type(getattr(opts, key))(getattr(opts, key) * factor)
                   for key, factor in scale.items()}
        result = run(server, dataclasses.replace(opts, **changes))
        result.scenario = name
        return result
    return runner


SCENARIOS = (
    Scenario("messages", "1:1 chat, 50 pairs × 4 in flight", scenario_core.run_messages,
             scenario_core.MESSAGES_METRICS),
    Scenario("messages-wide", "1:1 chat, 500 pairs × 1 in flight",
             sized("messages-wide", scenario_core.run_messages, pairs=10, window=0.25),
             scenario_core.MESSAGES_METRICS),
    Scenario("latency", "1:1 message latency, unloaded", scenario_core.run_latency,
             scenario_core.LATENCY_METRICS),
    Scenario("logins", "Logins per second", scenario_core.run_logins,
             scenario_core.LOGIN_METRICS),
    Scenario("idle", "Idle authenticated connections", scenario_core.run_idle,
             scenario_core.IDLE_METRICS),
    Scenario("presence", "Presence broadcast to online contacts", scenario_presence.run,
             scenario_presence.METRICS, scenario_presence.unavailable),
    Scenario("fanout", "Pubsub fan-out, 1000 subscribers × 100 items", scenario_pubsub.run,
             scenario_pubsub.METRICS, scenario_pubsub.unavailable),
    Scenario("fanout-deep", "Pubsub fan-out, 100 subscribers × 1000 items",
             sized("fanout-deep", scenario_pubsub.run, subscribers=0.1, items=10),
             scenario_pubsub.METRICS, scenario_pubsub.unavailable),
    Scenario("feeds", "Feed polling and normalizing (pubsubd only)", scenario_feeds.run,
             scenario_feeds.METRICS, scenario_feeds.unavailable, only_for="pubsubd"),
    Scenario("scale", "Feed work shared by 1, 2 and 4 component instances on PostgreSQL "
             "(pubsubd only)", scenario_scale.run, scenario_scale.METRICS,
             scenario_scale.unavailable, only_for="pubsubd"),
)
DEFAULT_SERVERS = "pubsubd,pubsubd-defaults,pubsubd-postgres,prosody,ejabberd"
SERVERS: dict[str, type[ServerUnderTest]] = {
    "pubsubd": Pubsubd, "pubsubd-defaults": PubsubdDefaults, "pubsubd-postgres": PubsubdPostgres,
    "prosody": prosody.Prosody, "ejabberd": ejabberd.Ejabberd}


def parse_args(argv: list[str] | None) -> tuple[Options, argparse.Namespace]:
    defaults = Options()
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(Options):
        flag = "--" + f.name.replace("_", "-")
        p.add_argument(flag, type=type(getattr(defaults, f.name)),
                       default=getattr(defaults, f.name), help="(default: %(default)s)")
    p.add_argument("--only", default="", help="comma-separated scenarios "
                   f"({', '.join(s.name for s in SCENARIOS)}); default: all. The report "
                   "then keeps its other sections and replaces only these")
    p.add_argument("--servers", default=DEFAULT_SERVERS,
                   help="(default: %(default)s; pubsubd-postgres: every store on PostgreSQL)")
    p.add_argument("--output", default=str(Path(__file__).parent / "RESULTS.md"),
                   help="the Markdown report (default: bench/RESULTS.md)")
    p.add_argument("--keep", action="store_true", help="keep the servers' temporary directories")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure every server this many times, taking turns in a rotating "
                        "order (A, B, C, then B, C, A, ...), and report the mean of each figure "
                        "with every round's value: on a machine whose speed drifts, one run of "
                        "each proves little (default: %(default)s)")
    p.add_argument("--profile", default="", help="directory for py-spy profiles of pubsubd, "
                   "one per scenario (folded stacks and a summary); default: none")
    args = p.parse_args(argv)
    opts = Options(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Options)})
    return opts, args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    opts, args = parse_args(argv)
    fds = raise_fd_limit()
    if fds < opts.idle // max(1, opts.workers) + 1000:
        log.warning("open-files limit %d may be too low for %d idle connections", fds, opts.idle)
    wanted = {s.strip() for s in args.only.split(",") if s.strip()}
    scenarios = [s for s in SCENARIOS if not wanted or s.name in wanted]
    server_names = [s.strip().lower() for s in args.servers.split(",") if s.strip()]
    if "prosody" in server_names and not prosody.installed():
        log.warning("prosody is not installed (apt-get install prosody); measuring pubsubd only")
        server_names.remove("prosody")
    if "ejabberd" in server_names and not ejabberd.installed():
        log.warning("ejabberd is not installed (apt-get install ejabberd); skipping it")
        server_names.remove("ejabberd")
    results: list[ScenarioResult] = []
    servers_seen: list[ServerUnderTest] = []
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="pubsubd-bench-"))
    rounds: list[list[ScenarioResult]] = []
    for turn in range(max(1, args.rounds)):
        measured: list[ScenarioResult] = []
        for name in turn_order(server_names, turn):
            server = SERVERS[name](root / f"{name}-{turn}")
            if turn == 0:
                servers_seen.append(server)
            profiles = None
            if args.profile and turn == 0 and name in ("pubsubd", "pubsubd-defaults"):
                # The defaults' profiles go to a subdirectory: same scenario names, other
                # config.
                profiles = Path(args.profile) / ("defaults" if name == "pubsubd-defaults"
                                                 else "")
            only: frozenset[str] | None = getattr(server, "scenarios", None)
            chosen = [s for s in scenarios if only is None or s.name in only]
            if chosen:
                measured.extend(run_server(server, chosen, opts, profiles))
        rounds.append(measured)
    results = combine_rounds(rounds)
    elapsed = time.monotonic() - started
    command = "python -m bench.run " + shlex.join(argv if argv is not None else sys.argv[1:])
    output = Path(args.output)
    names = None
    if args.servers != DEFAULT_SERVERS and output.exists():
        # Some servers only: the other servers' figures of these scenarios stay in the report.
        previous, names = report.parse_results(output.read_text(), scenarios)
        remeasured = {(r.scenario, r.server) for r in results}
        results = [r for r in previous if (r.scenario, r.server) not in remeasured
                   and r.server not in {s.name for s in servers_seen}] + results
        names += [s.name for s in servers_seen if s.name not in names]
    text = report.render(results, scenarios, servers_seen, opts, command.strip(), elapsed,
                         names)
    if wanted and output.exists():  # a partial run updates its sections only
        kept = ("; the other servers' columns are kept from the previous report"
                if names is not None else "")
        note = (f"_Measured {time.strftime('%Y-%m-%d %H:%M %Z')} with `{command.strip()}`, "
                f"apart from the other sections{kept}._")
        text = report.merge(output.read_text(), text, note)
    output.write_text(text)
    log.info("wrote %s (%.0f s in all)", args.output, elapsed)
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 1 if any(r.error for r in results) else 0


def turn_order(names: list[str], turn: int) -> list[str]:
    """The order the servers are measured in on round ``turn``: rotated by one each round, so
    that no server always runs first (paired runs of one tree showed the first place ahead by
    a few per cent) and each has every place as often over as many rounds as servers."""
    if not names:
        return names
    start = turn % len(names)
    return names[start:] + names[:start]


def combine_rounds(rounds: list[list[ScenarioResult]]) -> list[ScenarioResult]:
    """One result per (scenario, server): with several rounds, each figure is the mean of the
    rounds that measured it, and a note gives every round's value of the scenario's figure per
    server CPU-second (else its first); a round that failed is left out (its error kept when
    no round succeeded)."""
    if len(rounds) == 1:
        return rounds[0]
    combined: list[ScenarioResult] = []
    keys = [(r.scenario, r.server) for r in rounds[0]]
    for scenario, server in keys:
        found = [r for measured in rounds for r in measured
                 if (r.scenario, r.server) == (scenario, server)]
        good = [r for r in found if r.error is None and r.values]
        if not good:
            combined.append(found[0])
            continue
        first = good[0]
        result = ScenarioResult(scenario, server, notes=list(first.notes),
                                profile=next((r.profile for r in found if r.profile), []))
        for metric in first.values:
            values = [v for r in good if (v := r.values.get(metric)) is not None]
            result.values[metric] = sum(values) / len(values) if values else None
        lead = next((k for k in first.values if "per_cpu" in k), next(iter(first.values)))
        each = ", ".join(f"{v:,.0f}" if (v := r.values.get(lead)) is not None and v >= 100
                         else f"{v:.3g}" if v is not None else "—" for r in good)
        failed = len(found) - len(good)
        result.notes.append(f"mean of {len(good)} rounds (servers taking turns); {lead}, each "
                            f"round: {each}" + (f"; {failed} round(s) failed" if failed else ""))
        combined.append(result)
    return combined


def run_server(server: ServerUnderTest, scenarios: list[Scenario],
               opts: Options, profiles: Path | None = None) -> list[ScenarioResult]:
    """Start ``server``, provision accounts, run each scenario, stop it (also on errors)."""
    results: list[ScenarioResult] = []
    log.info("starting %s", server.name)
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001 - a server that cannot start is reported, not fatal
        log.error("%s did not start: %s", server.name, exc)
        server.stop()
        failure = f"the server did not start: {str(exc).splitlines()[0][:200]}"
        return [ScenarioResult(s.name, server.name, error=failure) for s in scenarios]
    try:
        log.info("%s: %s, registering accounts", server.name, server.version())
        scenario_core.provision(server, opts)
        for scenario in scenarios:
            reason = scenario.available(server) if server.alive() else "server not running"
            if reason and scenario.only_for not in (None, server.name):
                log.info("%s / %s: not measured (%s)", server.name, scenario.name, reason)
                results.append(ScenarioResult(scenario.name, server.name,
                                              notes=[f"not measured — {reason}"]))
                continue
            if reason:
                log.info("%s / %s: skipped (%s)", server.name, scenario.name, reason)
                results.append(ScenarioResult(scenario.name, server.name, error=reason))
                continue
            log.info("%s / %s ...", server.name, scenario.name)
            t0 = time.monotonic()
            recording = (profile.Recording(server.pid, profiles / f"{scenario.name}.folded")
                         if profiles is not None else None)
            server.recording = recording
            try:
                result = scenario.run(server, opts)
            except Exception as exc:  # noqa: BLE001 - one failing scenario must not stop the run
                log.error("%s / %s failed: %s", server.name, scenario.name, exc)
                log.debug("%s", traceback.format_exc())
                reason = str(exc) or "a deadline expired"
                result = ScenarioResult(scenario.name, server.name,
                                        error=f"{type(exc).__name__}: {reason}"[:300])
            server.recording = None
            if recording is not None and (folded := recording.stop()) is not None:
                summary = profile.summarize(folded, measured_only=recording.windowed)
                folded.with_suffix(".md").write_text(
                    f"# pubsubd profile: {scenario.name}\n\n" + "\n".join(summary) + "\n")
                result.profile = summary
                profile.compress(folded)
            log.info("%s / %s: %s (%.0f s)", server.name, scenario.name,
                     {k: round(v, 2) for k, v in result.values.items() if v is not None},
                     time.monotonic() - t0)
            results.append(result)
    finally:
        server.stop()
    return results


if __name__ == "__main__":
    raise SystemExit(main())
