"""Input validation: raw Kafka bytes in, a valid record or a dead letter with a reason code out.

Pure code (no Kafka), so every reason is unit-tested. Reason codes are a small fixed set because they
become the `reason` label of `sentiwatch_dead_letters_total`; the human detail goes only into the
DLQ record, never into a metric label.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import math
import re
from typing import Any

# The fixed set of dead-letter reasons (metric label values).
NOT_UTF8 = "not_utf8"
NOT_JSON = "not_json"
NOT_OBJECT = "not_object"
MISSING_ID = "missing_id"
MISSING_TEXT = "missing_text"
EMPTY_TEXT = "empty_text"
WRONG_TYPE = "wrong_type"
TEXT_TOO_LONG = "text_too_long"
BAD_TIMESTAMP = "bad_timestamp"
SCORING_FAILED = "scoring_failed"
# The fields besides `text` are over `max_extra_fields_bytes`: the scored record echoes them, so unbounded
# they could make it too large to send.
EXTRA_FIELDS_TOO_LARGE = "extra_fields_too_large"
# The scored record was refused by the producer or the broker as too large (scoring/delivery.py).
SCORED_TOO_LARGE = "scored_too_large"
# A JSON object with the same key twice: parsers disagree on which value wins (Python's json keeps the last,
# others the first or fail), so the record would mean different things to different readers.
DUPLICATE_KEY = "duplicate_key"
REASONS: tuple[str, ...] = (NOT_UTF8, NOT_JSON, NOT_OBJECT, MISSING_ID, MISSING_TEXT, EMPTY_TEXT, WRONG_TYPE,
                            TEXT_TOO_LONG, BAD_TIMESTAMP, SCORING_FAILED, EXTRA_FIELDS_TOO_LARGE, SCORED_TOO_LARGE,
                            DUPLICATE_KEY)

# Optional contract fields and the JSON types they may have; anything else a producer adds is passed through.
_OPTIONAL_STRINGS = ("topic", "source", "lang")


@dataclasses.dataclass(frozen=True)
class TextRecord:
    """A valid input record. `fields` is the producer's object, passed through to the scored record."""

    id: str
    text: str
    fields: dict[str, Any]
    event_time: float  # epoch seconds: the record's `ts`, else the Kafka timestamp
    producer_topic: str | None


@dataclasses.dataclass(frozen=True)
class Rejected:
    """Why a record cannot be scored: `reason` is one of REASONS, `detail` is for humans."""

    reason: str
    detail: str


def validate(raw: bytes | None, kafka_timestamp: float, max_text_bytes: int,
             max_extra_fields_bytes: int | None = None) -> TextRecord | Rejected:
    """Check one Kafka record value against the input contract; never raises. `max_extra_fields_bytes` bounds
    the JSON size of every field besides `text` (None: unbounded)."""
    if raw is None:
        return Rejected(NOT_JSON, "record has no value")
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected(NOT_UTF8, f"not valid UTF-8 ({exc.reason} at byte {exc.start})")
    try:
        value = json.loads(decoded, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        return Rejected(DUPLICATE_KEY, f"a JSON object has the key {str(exc)[:40]!r} more than once")
    except (json.JSONDecodeError, RecursionError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        return Rejected(NOT_JSON, f"invalid JSON: {detail}")
    if not isinstance(value, dict):
        return Rejected(NOT_OBJECT, f"expected a JSON object, got {type(value).__name__}")
    # JSON may escape a lone surrogate (\ud800): it decodes, but no UTF-8 output can carry it, so the
    # scored record could not be encoded and the whole batch would fail. Only such escapes need the check.
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(value):
        return Rejected(NOT_UTF8, "a \\u escape in the JSON is a lone surrogate, which is not valid Unicode")
    return validate_fields(value, kafka_timestamp, max_text_bytes, max_extra_fields_bytes)


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return value


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def validate_fields(value: dict[str, Any], kafka_timestamp: float, max_text_bytes: int,
                    max_extra_fields_bytes: int | None = None) -> TextRecord | Rejected:
    """The field checks of `validate`, for records that are already a JSON object."""
    record_id = value.get("id")
    if record_id is None or record_id == "":
        return Rejected(MISSING_ID, "field 'id' is missing or empty")
    if not isinstance(record_id, str):
        return Rejected(WRONG_TYPE, f"field 'id' must be a string, got {type(record_id).__name__}")
    text = value.get("text")
    if text is None:
        return Rejected(MISSING_TEXT, "field 'text' is missing")
    if not isinstance(text, str):
        return Rejected(WRONG_TYPE, f"field 'text' must be a string, got {type(text).__name__}")
    if not text.strip():
        return Rejected(EMPTY_TEXT, "field 'text' is empty or only whitespace")
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > max_text_bytes:
        return Rejected(TEXT_TOO_LONG, f"field 'text' is {size} bytes, over the limit of {max_text_bytes}")
    if max_extra_fields_bytes is not None:
        extra = _extra_fields_bytes(value)
        if extra > max_extra_fields_bytes:
            largest = max((name for name in value if name != "text"), key=lambda name: _json_bytes(value[name]))
            return Rejected(EXTRA_FIELDS_TOO_LARGE, f"the fields besides 'text' are {extra} bytes of JSON (largest: "
                                                    f"{largest[:40]!r}), over the limit of {max_extra_fields_bytes}")
    for name in _OPTIONAL_STRINGS:
        if value.get(name) is not None and not isinstance(value[name], str):
            return Rejected(WRONG_TYPE, f"field {name!r} must be a string, got {type(value[name]).__name__}")
    event_time = kafka_timestamp
    if value.get("ts") is not None:
        parsed = parse_timestamp(value["ts"])
        if parsed is None:
            return Rejected(BAD_TIMESTAMP, "field 'ts' is neither ISO-8601 nor epoch seconds")
        event_time = parsed
    producer_topic = value.get("topic")
    producer_topic = producer_topic.strip() if isinstance(producer_topic, str) and producer_topic.strip() else None
    return TextRecord(record_id, text, value, event_time, producer_topic)


def _json_bytes(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8", errors="surrogatepass"))


def _extra_fields_bytes(value: dict[str, Any]) -> int:
    """The JSON size of the record without `text`, as the scored record will echo it."""
    return _json_bytes({name: field for name, field in value.items() if name != "text"})


def parse_timestamp(value: Any) -> float | None:
    """ISO-8601 (naive means UTC) or epoch seconds (number or numeric string) -> epoch seconds, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            try:
                parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                return None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            seconds = parsed.timestamp()
    else:
        return None
    # Reject NaN/inf and values that are clearly not epoch seconds (e.g. milliseconds).
    if not math.isfinite(seconds) or not 0 <= seconds < 32_503_680_000:
        return None
    return seconds


def iso_utc(epoch_seconds: float) -> str:
    return dt.datetime.fromtimestamp(epoch_seconds, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# A dead letter must fit in one Kafka message (1 MB by default) after base64 (+33%): a larger original
# is cut to this many bytes. Unbounded, a 1 MB input made the DLQ send fail and crashed the score agent.
MAX_DEAD_LETTER_RAW_BYTES = 512 * 1024


def dead_letter(raw: bytes | None, rejected: Rejected, kafka_topic: str, partition: int, offset: int,
                now: float) -> dict[str, Any]:
    """The contract's DLQ record (plus `detail`): the original bytes survive intact (base64), unless they are
    over MAX_DEAD_LETTER_RAW_BYTES: then `raw` holds their start, `raw_truncated` is true and `raw_bytes`
    says how long the original was (its offset is in the record to fetch it while the topic keeps it)."""
    raw = raw or b""
    record = {
        "reason": rejected.reason,
        "detail": rejected.detail,
        "raw": base64.b64encode(raw[:MAX_DEAD_LETTER_RAW_BYTES]).decode("ascii"),
        "kafka_topic": kafka_topic,
        "partition": partition,
        "offset": offset,
        "at": iso_utc(now),
    }
    if len(raw) > MAX_DEAD_LETTER_RAW_BYTES:
        record.update(raw_truncated=True, raw_bytes=len(raw))
    return record
