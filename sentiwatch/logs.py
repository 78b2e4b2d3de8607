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


class StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record is logged, not the one there at set-up: a caller that
    swaps stderr and closes the old one (a test runner capturing output) must not leave a handler that raises
    on a closed file in some later thread."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:  # StreamHandler.__init__ assigns it; the property ignores that
        pass


def configure_logging(level: str = "INFO", log_format: str = "text", debug: bool = False,
                      stream: TextIO | None = None) -> None:
    """(Re)configure the root logger: one handler of ours on stderr, replacing the one an earlier call added
    (other handlers, such as a test runner's, are left alone)."""
    handler = logging.StreamHandler(stream) if stream is not None else StderrHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else getattr(logging, level.upper(), logging.INFO))


_HANDLER_NAME = "sentiwatch"
