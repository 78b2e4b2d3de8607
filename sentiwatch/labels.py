"""The label sets of the two heads, in the order of the model's outputs."""

SENTIMENT_LABELS: tuple[str, ...] = ("negative", "neutral", "positive")

# The built-in topic data (BBC news) has these five classes; `--data` files may add others.
DEFAULT_TOPIC_LABELS: tuple[str, ...] = ("business", "entertainment", "politics", "sport", "tech")

# The topic used when no producer topic, watchlist entry or confident model prediction applies,
# and the bucket for topics beyond the tracked-topic cap.
OTHER_TOPIC = "other"
