"""Language of a record, bundle coverage and the bounded labels (pure code)."""

from __future__ import annotations

import pytest

from sentiwatch.streamer.quality import languages as lang


@pytest.mark.parametrize(("text", "expected"), [
    ("ACME shares plunge 30% after accounting fraud probe", "und-Latn"),
    ("Die Aktie fällt nach dem Bericht", "und-Latn"),
    ("银行股大跌，投资者恐慌抛售", "zh"),
    ("ACME 股价 大跌 after results", "zh"),  # a Han character weighs as a word
    ("Apple launches a new phone in 北京 today", "und-Latn"),
    ("株価が急落した", "ja"),  # Han with kana
    ("주가가 급락했다", "ko"),
    ("Акции упали после отчёта", "und-Cyrl"),
    ("الأسهم تنخفض", "und-Arab"),
    ("Οι μετοχές έπεσαν", "el"),
    ("12345 !!! 😀", "und"),
    ("", "und"),
])
def test_detect_language_by_script(text, expected):
    assert lang.detect_language(text) == expected


def test_given_lang_wins_and_is_normalised():
    assert lang.record_language({"text": "银行股大跌", "lang": "EN-us"}) == ("en", True)
    assert lang.record_language({"text": "银行股大跌", "lang": "zh_CN"}) == ("zh", True)
    assert lang.record_language({"text": "银行股大跌", "lang": "  "}) == ("zh", False)


def test_bundle_languages_default_to_english():
    assert lang.bundle_languages({}) == ("en",)
    assert lang.bundle_languages({"languages": []}) == ("en",)
    assert lang.bundle_languages({"languages": ["en", "zh-Hans"]}) == ("en", "zh")


@pytest.mark.parametrize(("languages", "language", "covered"), [
    (("en",), "und-Latn", True),
    (("en",), "zh", False),
    (("en",), "und-Cyrl", False),
    (("en", "zh"), "zh", True),
    (("en",), "de", False),  # a producer that says German is believed
    (("zh",), "und-Latn", False),
    (("en",), "und", True),
    (("ru",), "und-Cyrl", True),
])
def test_coverage(languages, language, covered):
    assert lang.covers(languages, language) is covered


def test_metric_labels_are_bounded():
    assert lang.metric_label("zh", ("en",)) == "zh"
    assert lang.metric_label("und-Latn", ("en",)) == "und-Latn"
    assert lang.metric_label("xx", ("xx",)) == "xx"  # the bundle's own
    assert lang.metric_label("klingon", ("en",)) == "other"
    assert lang.metric_label("x" * 40, ("x" * 40,)) == "other"


def test_language_mix_counts():
    mix = lang.LanguageMix()
    for label, covered in [("und-Latn", True)] * 3 + [("zh", False)]:
        mix.add(label, covered)
    assert mix.snapshot() == {"records": {"und-Latn": 3, "zh": 1}, "uncovered": {"zh": 1}, "uncovered_share": 0.25}
