"""Issue 6, guarantee 3: hostile input. Property-based (hypothesis) over the pure input path — validation
and the scoring stage with the real tiny ONNX scorer — then a few hundred generated hostile records
through a real worker (benchmarks/fuzz_input.py runs 10,000).

The properties: nothing raises; every record comes out exactly once, scored or dead-lettered with a
known reason and its original bytes; records valid by construction are scored, in input order.
"""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.fuzz_input import run_fuzz
from sentiwatch.config import load_settings
from sentiwatch.streamer.scoring.records import NOT_UTF8, REASONS, Rejected, TextRecord, dead_letter, validate
from sentiwatch.streamer.scoring.stage import BatchScorer, RawMessage
from sentiwatch.streamer.scoring.topics import TopicCap
from tests.streaming_helpers import running_broker

MAX_TEXT_BYTES = 2_000
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.data_too_large])

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=25)
# Texts that are valid but nasty: controls, separators, surrogate pairs (emoji), mixed scripts.
nasty_text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=300).filter(lambda t: t.strip())
field_values = json_values | nasty_text | st.just("") | st.just("  \n\t")


@st.composite
def hostile_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "object", "record", "nested", "escapes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "object":
        return json.dumps(draw(st.dictionaries(st.sampled_from(["id", "text", "topic", "ts", "lang", "x"]),
                                               field_values, max_size=6))).encode()
    if kind == "record":  # the right shape, anything inside
        value = {"id": draw(field_values), "text": draw(field_values)}
        return json.dumps(value, ensure_ascii=draw(st.booleans())).encode()
    if kind == "nested":
        depth = draw(st.integers(1, 5_000))
        return b'{"id": "n", "text": "t", "deep": ' + b"[" * depth + b"]" * depth + b"}"
    # \u escapes, lone surrogates among them
    code = draw(st.integers(0, 0xFFFF))
    return b'{"id": "e", "text": "a \\u%04x b"}' % code


@st.composite
def valid_bytes(draw: st.DrawFn) -> tuple[str, bytes]:
    record_id = draw(st.text(min_size=1, max_size=20).filter(lambda t: t.strip() and t.isprintable()))
    value = {"id": record_id, "text": draw(nasty_text), "topic": "fuzz"}
    return record_id, json.dumps(value, ensure_ascii=draw(st.booleans())).encode()


@pytest.fixture(scope="module")
def batch_scorer(tiny_bundle_dir):
    from sentiwatch.streamer.inference.scorer import load_scorer

    config = load_settings(environ={"SENTIWATCH_MAX_TEXT_BYTES": str(MAX_TEXT_BYTES)})
    scorer = load_scorer(tiny_bundle_dir, "auto", 1)
    return BatchScorer(scorer, config, TopicCap(config.topic_cap, preferred={}))


@FUZZ
@given(hostile_bytes())
def test_validate_never_raises_and_keeps_its_promises(raw):
    checked = validate(raw, 1_700_000_000.0, MAX_TEXT_BYTES)
    if isinstance(checked, Rejected):
        assert checked.reason in REASONS
        return
    assert isinstance(checked, TextRecord)
    assert isinstance(checked.id, str) and checked.id
    assert checked.text.strip() and len(checked.text.encode("utf-8")) <= MAX_TEXT_BYTES


def test_lone_surrogate_escape_is_a_dead_letter_not_a_crash():
    assert validate(b'{"id": "s", "text": "a \\ud800 b"}', 0.0, MAX_TEXT_BYTES).reason == NOT_UTF8
    assert validate(b'{"id": "s", "text": "ok", "x": ["\\udfff"]}', 0.0, MAX_TEXT_BYTES).reason == NOT_UTF8
    assert isinstance(validate(b'{"id": "s", "text": "pair \\ud83d\\ude00"}', 0.0, MAX_TEXT_BYTES), TextRecord)


@FUZZ
@given(st.lists(st.one_of(hostile_bytes().map(lambda raw: (None, raw)), valid_bytes()), min_size=1, max_size=24))
def test_scoring_stage_sorts_every_record_out_and_keeps_valid_ones_in_order(batch_scorer, batch):
    messages = [RawMessage(raw, "in", 0, offset, 1_700_000_000.0) for offset, (_, raw) in enumerate(batch)]
    outcome = batch_scorer.score(messages, now=1_700_000_001.0)

    assert len(outcome.scored) + len(outcome.dead) == len(batch)
    scored = [json.loads(out.value.decode("utf-8")) for out in outcome.scored]
    expected_valid = [record_id for record_id, _ in batch if record_id is not None]
    scored_ids = [value["id"] for value in scored]
    # Valid by construction -> scored, in order; hostile ones that happen to be valid may sit in between.
    remaining = iter(scored_ids)
    assert all(any(record_id == got for got in remaining) for record_id in expected_valid)
    for value in scored:
        assert value["sentiment"]["label"] in ("negative", "neutral", "positive")
    dead_raw = []
    for dead in outcome.dead:
        record = json.loads(dead.value.decode("utf-8"))
        assert record["reason"] == dead.reason and dead.reason in REASONS
        dead_raw.append(base64.b64decode(record["raw"]))
    assert all(raw in [r for _, r in batch] for raw in dead_raw)


def test_a_one_megabyte_record_still_fits_in_one_dead_letter():
    raw = json.dumps({"id": "big", "text": "x" * 1_000_000}).encode()
    letter = dead_letter(raw, validate(raw, 0.0, MAX_TEXT_BYTES), "in", 0, 7, 0.0)
    encoded = json.dumps(letter).encode()
    assert letter["reason"] == "text_too_long" and letter["raw_truncated"] and letter["raw_bytes"] == len(raw)
    assert len(encoded) < 1_000_000  # Kafka's default message limit; the DLQ send failed before
    assert raw.startswith(base64.b64decode(letter["raw"]))


def test_one_megabyte_text_is_scored_truncated_when_the_limit_allows(tiny_bundle_dir):
    from sentiwatch.streamer.inference.scorer import load_scorer

    config = load_settings(environ={"SENTIWATCH_MAX_TEXT_BYTES": str(2 * 1024 * 1024)})
    stage = BatchScorer(load_scorer(tiny_bundle_dir, "auto", 1), config, TopicCap(10, preferred={}))
    big = json.dumps({"id": "big", "text": "words and more words " * 50_000}).encode()
    outcome = stage.score([RawMessage(big, "in", 0, 0, 1.0), RawMessage(b'{"id": "s", "text": "small"}', "in", 0, 1,
                                                                          1.0)])
    assert [json.loads(out.value)["id"] for out in outcome.scored] == ["big", "s"]
    assert json.loads(outcome.scored[0].value)["truncated"] is True


@pytest.mark.integration
def test_hostile_records_through_a_real_worker(tiny_bundle_dir, tmp_path):
    with running_broker() as brokers:
        report = run_fuzz(tiny_bundle_dir, brokers, 300, tmp_path)
    assert report.worker_alive
    assert report.lost == 0, report
    assert not report.out_of_order, report
    assert report.scored == report.valid and report.dead_lettered == report.bad, report
    assert len(report.reasons) >= 8, report  # the generator reaches most reasons
