"""Logging for every subcommand: the level and format come from the settings (`log_level`, `log_format`).

json writes one object per line with fixed keys (time, level, logger, message, and exception when there is one),
so a log collector can index fields without parsing free text. `--debug` wins over `log_level`.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import TextIO

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record; the message is formatted with its arguments first."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False)


def configure_logging(level: str = "INFO", log_format: str = "text", debug: bool = False,
                      stream: TextIO | None = None) -> None:
    """(Re)configure the root logger: one handler on stderr, replacing any earlier one."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else getattr(logging, level.upper(), logging.INFO))
