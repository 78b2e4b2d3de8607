"""What to label next (pure code with a fake clock): the three reasons, the order under a short budget, the rate."""

from __future__ import annotations

from sentiwatch.streamer.quality.review import (
    DISAGREEMENT,
    LOW_CONFIDENCE,
    NEW_VOCABULARY,
    ReviewSampler,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def scored(i: int, label: str, top: float, topic: str = "acme", text: str | None = None) -> dict:
    rest = (1 - top) / 2
    scores = {name: (top if name == label else rest) for name in ("negative", "neutral", "positive")}
    return {"id": f"r{i}", "text": text or f"acme results were {label} again", "topic": topic,
            "sentiment": {"label": label, "scores": scores}}


def test_off_by_default_picks_nothing():
    sampler = ReviewSampler(0, 0.5)
    assert not sampler.enabled
    assert sampler.sample([scored(0, "negative", 0.34)]) == []


def test_low_confidence_first_and_lowest_first_within_budget():
    clock = Clock()
    sampler = ReviewSampler(3, 0.5, clock=clock)
    batch = [scored(0, "negative", 0.45), scored(1, "neutral", 0.36), scored(2, "positive", 0.9),
             scored(3, "positive", 0.40), scored(4, "negative", 0.48)]
    picks = sampler.sample(batch)
    assert [p.value["id"] for p in picks] == ["r1", "r3", "r0"]  # a budget of 3, least sure first
    assert {p.why for p in picks} == {LOW_CONFIDENCE}
    assert picks[0].record()["why"] == LOW_CONFIDENCE and picks[0].record()["id"] == "r1"
    assert sampler.sample([scored(5, "neutral", 0.35)]) == []  # the bucket is empty
    clock.now += 20.0  # 3 a minute: one token back every 20 s
    assert [p.value["id"] for p in sampler.sample([scored(6, "neutral", 0.35), scored(7, "neutral", 0.34)])] == ["r7"]


def test_disagreement_with_the_topics_mood():
    sampler = ReviewSampler(1000, 0.5, clock=Clock())
    gloom = [scored(i, "negative", 0.9, topic="bank") for i in range(60)]
    assert sampler.sample(gloom) == []  # agreeing with the mood is not interesting
    picks = sampler.sample([scored(100, "positive", 0.9, topic="bank"), scored(101, "positive", 0.9, topic="new")])
    assert [(p.value["id"], p.why) for p in picks] == [("r100", DISAGREEMENT)]  # "new" has no mood yet


def test_new_vocabulary_after_warm_up():
    sampler = ReviewSampler(1000, 0.5, clock=Clock())
    warm = [scored(i, "neutral", 0.9, topic=f"t{i % 50}", text="quarterly results were steady overall")
            for i in range(1001)]
    assert sampler.sample(warm) == []
    picks = sampler.sample([scored(2000, "neutral", 0.9, topic="t1", text="Zorblax unveils quantumcoin wallets"),
                            scored(2001, "neutral", 0.9, topic="t2", text="quarterly results were steady again")])
    assert [(p.value["id"], p.why) for p in picks] == [("r2000", NEW_VOCABULARY)]
    # Seen once, the words are no longer new.
    assert sampler.sample([scored(2002, "neutral", 0.9, topic="t3", text="Zorblax unveils quantumcoin wallets")]) == []
