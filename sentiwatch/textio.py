"""Reading CSV and JSONL files row by row, where a bad row keeps its place with an error.

Every command that reads user files (train --data, evaluate, score, replay) goes through here, so
they all agree on what a row is and how a bad one is reported.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sentiwatch.errors import DataError


@dataclasses.dataclass(frozen=True)
class Row:
    """One input row: `line` is 1-based (the header is line 1 in a CSV); `fields` is None on error."""

    line: int
    fields: dict[str, Any] | None
    error: str | None = None


def file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    raise DataError(f"{path}: unknown file type {suffix or '(none)'}; expected .csv or .jsonl")


def read_rows(path: str | Path, encoding: str = "utf-8") -> Iterator[Row]:
    """Yield every row of a CSV or JSONL file in order, never raising on a single bad row."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    fmt = file_format(path)
    raw = path.read_bytes()
    if fmt == "jsonl":
        yield from _jsonl_rows(raw, encoding)
    else:
        yield from _csv_rows(path, raw, encoding, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")


def _jsonl_rows(raw: bytes, encoding: str) -> Iterator[Row]:
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            text = line.decode(encoding)
        except UnicodeDecodeError as exc:
            yield Row(number, None, f"line is not valid {encoding} ({exc.reason} at byte {exc.start})")
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield Row(number, None, f"invalid JSON: {exc.msg}")
            continue
        if not isinstance(value, dict):
            yield Row(number, None, f"expected a JSON object, got {type(value).__name__}")
            continue
        yield Row(number, value)


def _csv_rows(path: Path, raw: bytes, encoding: str, delimiter: str) -> Iterator[Row]:
    # Decode line by line so one undecodable row does not lose the whole file.
    text = raw.decode(encoding, errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    header = [name.strip().lstrip("\ufeff") for name in header]
    if len(set(header)) != len(header):
        raise DataError(f"{path}: duplicate column names in header: {header}")
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Row(reader.line_num, None, f"malformed CSV: {exc}")
            continue
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            yield Row(reader.line_num, None, f"expected {len(header)} columns, got {len(values)}")
            continue
        fields = dict(zip(header, values, strict=True))
        bad = [name for name, value in fields.items() if _has_surrogates(value)]
        if bad:
            yield Row(reader.line_num, None, f"column {bad[0]!r} is not valid {encoding}")
            continue
        yield Row(reader.line_num, fields)


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def write_jsonl(path: str | Path, records: Iterator[dict[str, Any]]) -> int:
    """Write records as JSON lines (UTF-8, one per line); return how many were written."""
    count = 0
    with open(path, "w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False))
            out.write("\n")
            count += 1
    return count


UNDETERMINED = "und"
# Unicode ranges of the scripts that name a language on their own (checked in this order: Japanese text
# mixes kana with Han characters, so kana decides before Han).
_SCRIPTS: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = (
    ("ja", ((0x3040, 0x30FF), (0x31F0, 0x31FF))),
    ("ko", ((0xAC00, 0xD7AF), (0x1100, 0x11FF), (0x3130, 0x318F))),
    ("zh", ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xF900, 0xFAFF))),
)


def script_language(text: str) -> str:
    """A language guess from the writing system alone: `ja`, `ko` or `zh` when at least a fifth of the
    letters are in that script, `en` when most letters are basic Latin, else `und`.

    Why so crude: it needs no model and no dictionary, and what the bundle's languages must tell apart is
    which writing system its tokenizer and training data covered. Latin-script text in other languages is
    reported as `en`; a file with a `lang` column says better."""
    letters = [ord(ch) for ch in text if ch.isalpha()]
    if not letters:
        return UNDETERMINED
    for lang, ranges in _SCRIPTS:
        share = sum(any(low <= cp <= high for low, high in ranges) for cp in letters) / len(letters)
        if share >= 0.2:
            return lang
    latin = sum(cp < 0x250 for cp in letters) / len(letters)
    return "en" if latin >= 0.5 else UNDETERMINED
