import numpy as np
import pytest

from sentiwatch.errors import ConfigError
from sentiwatch.labels import OTHER_TOPIC
from sentiwatch.streamer.scoring.topics import (
    MODEL,
    PRODUCER,
    WATCHLIST,
    TopicCap,
    Watchlist,
    resolve_topic,
    valid_label,
)

LABELS = ("business", "sport")
WATCH = Watchlist({"ACME": ["acme", "$acme"], "Globex": ["globex corp"]})


def resolve(producer, text, probs=(0.5, 0.5), threshold=0.6):
    return resolve_topic(producer, text, np.array(probs, dtype=np.float32), LABELS, WATCH, threshold)


def test_producer_topic_wins():
    assert resolve("cars", "ACME everywhere", (0.9, 0.1)) == ("cars", PRODUCER)


def test_watchlist_is_a_case_insensitive_word_match():
    assert resolve(None, "I sold my $ACME shares") == ("ACME", WATCHLIST)
    assert resolve(None, "acme!") == ("ACME", WATCHLIST)
    assert resolve(None, "GLOBEX Corp results") == ("Globex", WATCHLIST)
    assert resolve(None, "acmeville is lovely") == (OTHER_TOPIC, MODEL)  # not a word match
    assert resolve(None, "the acmes") == (OTHER_TOPIC, MODEL)


def test_model_topic_needs_confidence():
    assert resolve(None, "a match today", (0.2, 0.8)) == ("sport", MODEL)
    assert resolve(None, "a match today", (0.45, 0.55)) == (OTHER_TOPIC, MODEL)


def test_cap_admits_only_configured_topics_in_a_fixed_order():
    cap = TopicCap(4, preferred=["ACME"], allowlist=["flood-7", "Initech", "late-comer"])
    # A flood of producer topics cannot take a slot, whatever comes first.
    labels = [cap.label(f"flood-{i}") for i in range(50)]
    assert set(labels) == {OTHER_TOPIC, "flood-7"} and labels[7] == "flood-7"
    cap.prefer_model_labels(["business", "sport"])  # the scorer's labels come after the watchlist's
    assert cap.admitted == {"ACME", "business", "sport", "flood-7", OTHER_TOPIC}
    assert cap.label("Initech") == OTHER_TOPIC  # over the cap of 4
    assert cap.label(OTHER_TOPIC) == OTHER_TOPIC


def test_two_workers_key_every_topic_alike_whatever_order_they_see():
    """Issue 13, item 4: first come, first admitted made two workers (or one after a restart) key the same
    subject differently ("ACME" on one, "other" on the other), splitting its windows and baselines."""
    topics = [f"junk-{i}" for i in range(30)] + ["ACME", "Globex", "sport"]
    first, second = (TopicCap(3, allowlist=["ACME", "Globex"]) for _ in range(2))
    for cap in (first, second):
        cap.prefer_model_labels(["sport"])
    assert [first.label(t) for t in topics] == [second.label(t) for t in reversed(topics)][::-1]
    assert first.label("ACME") == "ACME" and first.label("junk-0") == OTHER_TOPIC


def test_label_values_are_validated_before_they_reach_prometheus_status_or_alert_ids():
    for bad in ["x" * 101, "", " padded", "tab\there", "a\u200db", "rtl\u200fmark", "quote\"s", "back\\slash",
                "{brace}", "new\nline", "emoji \U0001F600"]:
        assert not valid_label(bad), bad
    for good in ["x" * 100, "ACME", "Café Müller", "北京", "$ACME", "AT&T", "sport/football", "o'neil (corp)"]:
        assert valid_label(good), good
    with pytest.raises(ConfigError, match="'topic_allowlist'"):
        TopicCap(5, allowlist=["fine", "bad\u200b"])
    with pytest.raises(ConfigError, match="'watchlist'"):
        TopicCap(5, preferred={"x" * 101: ["x"]})
    cap = TopicCap(5)
    cap.prefer_model_labels(["ok", "not\nok"])  # a bundle's bad label is left to `other`, not a crash
    assert cap.admitted == {"ok", OTHER_TOPIC}
