"""Logging for operators: one line per event, as text or as JSON with structured fields.

Log calls name what they are about through ``extra=``: ``event`` (a stable dotted name such as
``c2s.login_failed`` or ``feed.fetched``), ``jid``, ``peer`` (a client's address), ``feed`` (a
feed URL), ``node``, ``status`` and ``count``. The JSON formatter puts those fields on the
line, so a log pipeline filters by JID or feed without parsing messages.

Authentication data never reaches a log line (habit 9 of the design): code logs the outcome of
a login, never its SASL payloads; and because a third-party library logging at DEBUG could
still echo wire data, every line goes through :class:`SecretFilter`, which blanks the content
of SASL ``<auth>``, ``<response>``, ``<challenge>`` and ``<success>`` elements and
``password`` fields wherever they appear in a message.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import MutableMapping
from typing import Any

from pubsubd.config import Config

__all__ = ["ContextAdapter", "FIELDS", "JsonFormatter", "SecretFilter", "setup_logging"]

FIELDS = ("event", "jid", "peer", "feed", "node", "status", "count")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_SASL_PAYLOAD = re.compile(
    r"(<(auth|response|challenge|success)\b[^>]*xmlns=['\"]urn:ietf:params:xml:ns:xmpp-sasl"
    r"['\"][^>]*>)[^<]*(</\2>)")
_PASSWORD = re.compile(r"((?:password|passwd)['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}<]+", re.I)
REDACTED = "[redacted]"


class ContextAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger adapter whose fixed fields (e.g. a connection's ``peer``) are merged with the
    ``extra=`` of each call, instead of replacing it as :class:`logging.LoggerAdapter` does."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


class SecretFilter(logging.Filter):
    """Blanks SASL payloads and password values in a record's message, whatever logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def redact(text: str) -> str:
    text = _SASL_PAYLOAD.sub(lambda m: f"{m.group(1)}{REDACTED}{m.group(3)}", text)
    return _PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}", text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"time": self.formatTime(record), "level": record.levelname,
                                "logger": record.name, "message": record.getMessage()}
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None and value != "":
                line[name] = value if isinstance(value, int | float | bool) else str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def setup_logging(config: Config) -> None:
    """Configure the root logger from ``config.log`` (level, and ``text`` or ``json``)."""
    handler = logging.StreamHandler()
    handler.addFilter(SecretFilter())
    if config.log.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=getattr(logging, config.log.level), handlers=[handler])
