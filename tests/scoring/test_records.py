import base64
import json

import pytest

from sentiwatch.streamer.scoring import records
from sentiwatch.streamer.scoring.records import Rejected, TextRecord, dead_letter, parse_timestamp, validate

KAFKA_TS = 1_700_000_000.0


def check(value: bytes | None, max_bytes: int = 100) -> TextRecord | Rejected:
    return validate(value, KAFKA_TS, max_bytes)


@pytest.mark.parametrize("raw, reason", [
    (None, records.NOT_JSON),
    (b"\xff\xfe not utf-8", records.NOT_UTF8),
    (b"{not json", records.NOT_JSON),
    (b"[" * 100_000 + b"]" * 100_000, records.NOT_JSON),  # deeply nested: RecursionError, not a crash
    (b'[1, 2]', records.NOT_OBJECT),
    (b'"text"', records.NOT_OBJECT),
    (b'{"text": "hi"}', records.MISSING_ID),
    (b'{"id": "", "text": "hi"}', records.MISSING_ID),
    (b'{"id": 7, "text": "hi"}', records.WRONG_TYPE),
    (b'{"id": "a"}', records.MISSING_TEXT),
    (b'{"id": "a", "text": ["hi"]}', records.WRONG_TYPE),
    (b'{"id": "a", "text": " \\n\\t "}', records.EMPTY_TEXT),
    (b'{"id": "a", "text": "' + b"x" * 101 + b'"}', records.TEXT_TOO_LONG),
    (b'{"id": "a", "text": "hi", "topic": 3}', records.WRONG_TYPE),
    (b'{"id": "a", "text": "hi", "ts": "yesterday"}', records.BAD_TIMESTAMP),
    (b'{"id": "a", "text": "hi", "ts": 1700000000000}', records.BAD_TIMESTAMP),  # milliseconds
])
def test_each_rejection_has_its_reason(raw, reason):
    result = check(raw)
    assert isinstance(result, Rejected)
    assert result.reason == reason
    assert result.reason in records.REASONS


def test_text_limit_counts_utf8_bytes_not_characters():
    text = "é" * 60  # 120 bytes
    assert isinstance(check(json.dumps({"id": "a", "text": text}).encode()), Rejected)
    assert isinstance(check(json.dumps({"id": "a", "text": text}).encode(), max_bytes=120), TextRecord)


def test_valid_record_keeps_fields_and_event_time():
    raw = json.dumps({"id": "a", "text": "Great 🚀 news", "topic": " ACME ", "source": "x", "extra": [1]}).encode()
    result = check(raw)
    assert isinstance(result, TextRecord)
    assert (result.id, result.text, result.producer_topic) == ("a", "Great 🚀 news", "ACME")
    assert result.event_time == KAFKA_TS
    assert result.fields["extra"] == [1]


@pytest.mark.parametrize("value, expected", [
    (1_700_000_123, 1_700_000_123.0),
    ("1700000123.5", 1_700_000_123.5),
    ("2023-11-14T22:15:23Z", 1_700_000_123.0),
    ("2023-11-14T23:15:23+01:00", 1_700_000_123.0),
    ("2023-11-14T22:15:23", 1_700_000_123.0),  # naive means UTC
    (True, None), (None, None), ("nan", None), (-5, None),
])
def test_parse_timestamp(value, expected):
    assert parse_timestamp(value) == expected


def test_record_ts_wins_over_kafka_timestamp():
    result = check(b'{"id": "a", "text": "hi", "ts": "2023-11-14T22:15:23Z"}')
    assert result.event_time == 1_700_000_123.0


def test_dead_letter_keeps_original_bytes():
    raw = b"\xff\x00 broken"
    record = dead_letter(raw, Rejected(records.NOT_UTF8, "bad"), "sentiwatch.texts", 2, 41, KAFKA_TS)
    assert base64.b64decode(record["raw"]) == raw
    assert (record["reason"], record["kafka_topic"], record["partition"], record["offset"]) == \
        ("not_utf8", "sentiwatch.texts", 2, 41)
    assert record["at"] == "2023-11-14T22:13:20.000Z"
