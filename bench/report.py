"""Render the run as Markdown: the machine, the command, one table per scenario."""

from __future__ import annotations

import os
import platform
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bench.measure import ScenarioResult, ratio
from bench.options import Options
from bench.servers import ServerUnderTest

if TYPE_CHECKING:
    from bench.run import Scenario


def machine() -> list[str]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return [
        f"- CPU: {os.cpu_count()} × {cpu} (nproc {len(os.sched_getaffinity(0))}){mem}",
        f"- OS: {platform.system()} {platform.release()}",
        f"- Python: {sys.version.split()[0]} ({platform.python_implementation()})",
    ]


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render(results: Sequence[ScenarioResult], scenarios: Sequence[Scenario],
           servers: Sequence[ServerUnderTest], opts: Options, command: str,
           elapsed: float, names: Sequence[str] | None = None) -> str:
    names = list(names) if names is not None else [s.name for s in servers]
    out = ["# Benchmark results", "",
           f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')} in {elapsed:.0f} s, with `{command}`.",
           "", "## Machine", "", *machine()]
    out += [f"- {s.name}: {s.version()}" for s in servers]
    out += ["", "The servers run on the same loopback, one after the other, with generated "
            "configs (plaintext c2s, SASL PLAIN, hashed credentials with 4096 iterations, "
            "in-band registration, logging at warning level). The load comes from "
            f"{opts.workers} processes of `bench/loadgen.py` on the same machine, so the load "
            "generator and the server share the cores; *per server CPU-second* figures are "
            "the fairest comparison (CPU time of the server process from /proc/<pid>/stat).",
            ""]
    others = [n for n in names if not n.startswith("pubsubd")] if "pubsubd" in names else []
    for scenario in scenarios:
        out += [f"## {scenario.title} (`{scenario.name}`)", ""]
        by_server = {r.server: r for r in results if r.scenario == scenario.name}
        header = "| metric | " + " | ".join(names)
        rule = "|---|" + "---:|" * len(names)
        for other in others:
            header += f" | pubsubd / {other}"
            rule += "---:|"
        out += [header + " |", rule]
        for metric in scenario.metrics:
            cells = [_fmt(by_server[n].values.get(metric.key)) if n in by_server else "—"
                     for n in names]
            row = f"| {metric.label} ({metric.unit}, {'↑' if metric.higher_is_better else '↓'}) | "
            row += " | ".join(cells)
            a = by_server.get("pubsubd")
            for other in others:
                b = by_server.get(other)
                r = ratio(a.values.get(metric.key) if a else None,
                          b.values.get(metric.key) if b else None)
                row += f" | {'—' if r is None else f'{r:.2f}×'}"
            out.append(row + " |")
        out.append("")
        for n in names:
            found = by_server.get(n)
            if found is None:
                continue
            if found.error:
                out.append(f"- {n}: not measured — {found.error}")
            out += [f"- {n}: {note}" for note in found.notes]
        out.append("")
        for name in ("pubsubd", "pubsubd (defaults)"):
            ours = by_server.get(name)
            if ours is not None and ours.profile:
                out += [f"<details><summary>{name} profile (py-spy, samples holding the GIL)"
                        "</summary>", "", *ours.profile, "", "</details>", ""]
    out += ["↑ higher is better, ↓ lower is better. Sizes: "
            + ", ".join(f"{k}={v}" for k, v in _asdict(opts).items()) + ".", ""]
    return "\n".join(out)


def _asdict(opts: Options) -> dict[str, object]:
    import dataclasses

    return {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts)}


_SECTION = re.compile(r"^## .* \(`([\w-]+)`\)$")
_FOOTER = "↑ higher is better"


def _split(text: str) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """(lines before the first scenario, each scenario's lines by name, the footer onwards)."""
    head: list[str] = []
    sections: dict[str, list[str]] = {}
    tail: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        found = _SECTION.match(line)
        if tail or (line.startswith(_FOOTER) and sections):
            tail.append(line)
        elif found:
            current = sections.setdefault(found.group(1), [])
            current.append(line)
        elif current is not None and line.startswith("## "):
            tail.append(line)  # a hand-written section after the scenarios
        else:
            (current if current is not None else head).append(line)
    return head, sections, tail


def merge(previous: str, fresh: str, note: str) -> str:
    """``previous`` with the scenario sections of ``fresh`` put in (replaced or appended).

    A run of a few scenarios (``--only``) must not erase the figures of the others, nor the
    notes written by hand below them; each merged section says when it was measured.
    """
    head, sections, tail = _split(previous)
    if not sections:
        return fresh
    _, new_sections, _ = _split(fresh)
    for name, lines in new_sections.items():
        sections[name] = [lines[0], "", note, *lines[1:]]
    body = [line for lines in sections.values() for line in lines]
    return "\n".join(head + body + tail) + "\n"


def _number(cell: str) -> float | None:
    try:
        return float(cell.replace(",", ""))
    except ValueError:
        return None


def parse_results(text: str, scenarios: Sequence[Scenario]) -> tuple[list[ScenarioResult],
                                                                      list[str]]:
    """The figures of a previous report, back as results, and its server columns in order.

    A run of some servers only (``--servers``) keeps the other servers' columns of the
    sections it measures again (their cells are read back at the precision they were shown).
    """
    _, sections, _ = _split(text)
    by_key = {s.name: s for s in scenarios}
    found: dict[tuple[str, str], ScenarioResult] = {}
    order: list[str] = []
    for name, lines in sections.items():
        scenario = by_key.get(name)
        if scenario is None:
            continue
        header = next((line for line in lines if line.startswith("| metric |")), None)
        if header is None:
            continue
        columns = [c.strip() for c in header.strip("|").split("|")][1:]
        servers = [c for c in columns if " / " not in c]
        order += [n for n in servers if n not in order]
        labels = {f"{m.label} ({m.unit}, {'↑' if m.higher_is_better else '↓'})": m.key
                  for m in scenario.metrics}
        for server in servers:
            found[(name, server)] = ScenarioResult(name, server)
        for line in lines:
            cells = [c.strip() for c in line.strip("|").split("|")]
            key = labels.get(cells[0]) if cells else None
            if key is None:
                continue
            for server, cell in zip(servers, cells[1:1 + len(servers)], strict=False):
                found[(name, server)].values[key] = _number(cell)
            for server in servers:
                prefix = f"- {server}: "
                found[(name, server)].notes = [
                    n[len(prefix):] for n in lines
                    if n.startswith(prefix) and not n.startswith(prefix + "not measured")]
        if (name, "pubsubd") in found and any(line.startswith("<details>") for line in lines):
            start = next(i for i, line in enumerate(lines) if line.startswith("<details>"))
            end = next((i for i, line in enumerate(lines) if line == "</details>"), len(lines))
            found[(name, "pubsubd")].profile = lines[start + 2:end - 1]
    return list(found.values()), order
