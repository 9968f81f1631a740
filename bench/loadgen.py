"""Load generator processes and the barrier protocol that lets the parent measure the server.

The parent starts ``count`` worker processes (so the load uses every core), each running one
asyncio scenario coroutine. A scenario calls ``await ctx.sync(label, data)`` at each phase
boundary; the parent's :meth:`Workers.reach` returns every worker's ``data`` once all of them
are there, the parent reads the server's CPU time and memory, and :meth:`Workers.release`
lets them go on. Every wait has a deadline, so a stuck server ends the run instead of hanging it.
"""

from __future__ import annotations

import asyncio
import importlib
import multiprocessing
import queue
import resource
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from bench.servers import cpu_seconds
from bench.wire import Target

ScenarioFn = Callable[["WorkerContext"], Coroutine[Any, Any, Any]]


def raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard limit (idle-connection scenario)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class WorkerContext:
    """What a scenario coroutine sees inside its worker process."""

    index: int
    count: int
    target: Target
    params: dict[str, Any]
    barrier: Any
    results: Any
    timeout: float
    extra: dict[str, Any] = field(default_factory=dict)

    async def sync(self, label: str, data: Any = None) -> None:
        """Report ``data`` and wait until the parent has measured and released everyone."""
        self.results.put((self.index, label, data))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.barrier.wait, self.timeout)
        await loop.run_in_executor(None, self.barrier.wait, self.timeout)

    def share(self, total: int) -> range:
        """This worker's slice of ``range(total)``."""
        return range(self.index, total, self.count)


def _worker_main(fn_path: str, index: int, count: int, target: Target, params: dict[str, Any],
                 barrier: Any, results: Any, timeout: float) -> None:
    raise_fd_limit()
    module, _, name = fn_path.partition(":")
    fn: ScenarioFn = getattr(importlib.import_module(module), name)
    ctx = WorkerContext(index, count, target, params, barrier, results, timeout)
    try:
        outcome: Any = asyncio.run(fn(ctx))
        results.put((index, "__result__", outcome))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which aborts the run
        results.put((index, "__error__", f"{type(exc).__name__}: {exc}"))
        barrier.abort()
        raise SystemExit(1) from None


class WorkerFailed(RuntimeError):
    pass


class Workers:
    """``count`` processes running the scenario coroutine ``fn_path`` ("module:function")."""

    def __init__(self, fn_path: str, count: int, target: Target, params: dict[str, Any],
                 timeout: float = 300.0) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.count = count
        self.timeout = timeout
        self.barrier = ctx.Barrier(count + 1)
        self.results: Any = ctx.Queue()
        self.procs = [
            ctx.Process(target=_worker_main, daemon=True,
                        args=(fn_path, i, count, target, params, self.barrier, self.results,
                              timeout))
            for i in range(count)
        ]
        for p in self.procs:
            p.start()
        self._stash: list[tuple[int, str, Any]] = []

    def _collect(self, label: str, deadline_s: float) -> list[Any]:
        found: dict[int, Any] = {}
        kept = []
        for item in self._stash:
            (found.__setitem__(item[0], item[2]) if item[1] == label else kept.append(item))
        self._stash = kept
        while len(found) < self.count:
            try:
                index, got, data = self.results.get(timeout=deadline_s)
            except queue.Empty:
                raise WorkerFailed(f"workers did not report {label!r} in time") from None
            if got == "__error__":
                raise WorkerFailed(f"worker {index}: {data}")
            if got == label:
                found[index] = data
            else:
                self._stash.append((index, got, data))
        return [found[i] for i in range(self.count)]

    def _barrier(self) -> None:
        try:
            self.barrier.wait(self.timeout)
        except threading.BrokenBarrierError:
            errors = [d for _, got, d in self._drain() if got == "__error__"]
            raise WorkerFailed("; ".join(map(str, errors)) or "a worker failed") from None

    def _drain(self) -> list[tuple[int, str, Any]]:
        items = list(self._stash)
        while True:
            try:
                items.append(self.results.get(timeout=1.0))
            except queue.Empty:
                return items

    def reach(self, label: str) -> list[Any]:
        """Block until every worker is at ``label``; they wait until :meth:`release`."""
        self._barrier()
        return self._collect(label, self.timeout)

    def release(self) -> None:
        self._barrier()

    def finish(self) -> list[Any]:
        """Each worker's return value, once all have ended."""
        outcomes = self._collect("__result__", self.timeout)
        for p in self.procs:
            p.join(10)
        return outcomes

    def cpu(self) -> float:
        """CPU seconds the load processes have used so far (the load generator must stay
        lighter than the server it measures)."""
        return sum(cpu_seconds(p.pid) for p in self.procs if p.pid is not None and p.is_alive())

    def kill(self) -> None:
        self.barrier.abort()
        for p in self.procs:
            if p.is_alive():
                p.kill()
            p.join(5)
