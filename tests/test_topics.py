import numpy as np

from sentiwatch.labels import OTHER_TOPIC
from sentiwatch.streamer.scoring.topics import MODEL, PRODUCER, WATCHLIST, TopicCap, Watchlist, resolve_topic

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


def test_cap_bounds_labels_and_prefers_configured_topics():
    cap = TopicCap(3, preferred=["ACME"])
    labels = [cap.label(f"flood-{i}") for i in range(50)]
    assert labels[:2] == ["flood-0", "flood-1"]
    assert set(labels[2:]) == {OTHER_TOPIC}
    assert cap.label("ACME") == "ACME"
    assert cap.label(OTHER_TOPIC) == OTHER_TOPIC
    assert len(cap.admitted - {OTHER_TOPIC}) == 3


def test_overlong_topics_are_not_labels():
    cap = TopicCap(10)
    assert cap.label("x" * 101) == OTHER_TOPIC
    assert cap.label("x" * 100) == "x" * 100
