"""The feed service's fetcher: configured from ``feeds.*`` settings and observed, so metrics
and logs see every fetch without the ``feeds`` package knowing about pubsubd."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from feeds.fetch import DEFAULT_USER_AGENT, FetchConfig, Fetcher, FetchResult
from feeds.netguard import AddressPolicy
from pubsubd.config import FeedsConfig

log = logging.getLogger(__name__)


class ObservedFetcher(Fetcher):
    """The service's fetcher: every fetch is reported to ``listeners`` (metrics, logs, rates)
    without the ``feeds`` package knowing about pubsubd."""

    def __init__(self, config: FetchConfig) -> None:
        super().__init__(config)
        self.listeners: list[Callable[[FetchResult], None]] = []

    async def fetch(self, url: str, *, etag: str | None = None,
                    last_modified: str | None = None) -> FetchResult:
        result = await super().fetch(url, etag=etag, last_modified=last_modified)
        for listener in self.listeners:
            try:
                listener(result)
            except Exception:  # noqa: BLE001 - an observer's bug must not fail the poll
                log.exception("fetch listener failed for %s", url)
        return result


def fetch_label(result: FetchResult) -> str:
    """The HTTP status of a fetch, or its error kind when no response came (e.g. "timeout")."""
    if result.status is not None:
        return str(result.status)
    return str(result.error or "error")


def fetch_config(
    cfg: FeedsConfig, endpoints: frozenset[tuple[str, int]] = frozenset(),
    instance: str | None = None
) -> FetchConfig:
    """The fetcher's settings; a configured instance name rides in the User-Agent, so a feed's
    publisher (and the scale test) can tell the instances of one service apart."""
    policy = dataclasses.replace(
        AddressPolicy.from_strings(cfg.allow_hosts), allow_endpoints=endpoints
    )
    return FetchConfig(
        user_agent=f"{DEFAULT_USER_AGENT} instance/{instance}" if instance else DEFAULT_USER_AGENT,
        connect_timeout=cfg.connect_timeout,
        read_timeout=cfg.read_timeout,
        total_timeout=cfg.total_timeout,
        max_body_bytes=cfg.max_body_bytes,
        max_concurrent=max(cfg.max_concurrent, 1) * 2,
        max_per_host=max(cfg.max_per_host, 1),
        policy=policy,
    )


__all__ = ["ObservedFetcher", "fetch_config", "fetch_label"]
