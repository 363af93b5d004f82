"""How the bot's log lines look: text for people, or one JSON object per line for machines.

``THUMBTUNE_LOG_FORMAT=json`` writes each record as one JSON object: ``time`` (UTC, ISO
8601), ``level``, ``logger``, ``message``, the ids a record carries (``run``,
``version``, ``platform``, ``channel``, passed as ``extra=``) and ``exception`` when
there is one. Either way the values of the secret settings (tokens, the signing secret,
the person secret) are masked wherever they would appear: they are never logged on
purpose, and this makes sure a library's message cannot leak one either.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Iterable

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
IDS = ("run", "version", "platform", "channel")  # record attributes JSON lines carry when set
MASK = "[secret]"


class JsonLines(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in IDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = record.exc_text or self.formatException(record.exc_info)  # (masked) text first
        return json.dumps(line, ensure_ascii=False, default=str)


class MaskSecrets(logging.Filter):
    """Replaces the given secret values in a record's message and arguments."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({secret for secret in secrets if len(secret) >= 8}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        masked = self._mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_text is None:
            record.exc_text = self._mask(logging.Formatter().formatException(record.exc_info))
        return True

    def _mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text


def formatter(kind: str) -> logging.Formatter:
    return JsonLines() if kind == "json" else logging.Formatter(TEXT_FORMAT)
