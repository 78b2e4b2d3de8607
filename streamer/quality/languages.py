"""Which language a text is in, whether the serving bundle covers it, and the bounded language mix.

A record's `lang` (from the producer) wins; otherwise the language is told from the text's writing
system, which needs no model and costs microseconds: kana means Japanese, Hangul Korean, Han (without
kana; a character weighs as four letters) Chinese, and a script only one language here uses (Greek,
Thai, Hebrew) names it; other scripts give `und-<Script>` (Latin, Cyrillic, Arabic, Devanagari), because
telling English from German needs more than the script. Coverage follows the same line: a bundle covers
a detected script when one of its languages (the manifest's `languages`, default ["en"]) is written in
it. So an English bundle flags a Chinese or Russian text as uncovered but not a German one; a producer
that knows sends `lang`.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# The script each language is written in (ISO 639-1 -> ISO 15924); also the bounded set of `lang` values that
# get their own metric label.
SCRIPT_OF: dict[str, str] = {
    "en": "Latn", "de": "Latn", "fr": "Latn", "es": "Latn", "it": "Latn", "pt": "Latn", "nl": "Latn", "sv": "Latn",
    "da": "Latn", "no": "Latn", "fi": "Latn", "pl": "Latn", "cs": "Latn", "ro": "Latn", "hu": "Latn", "tr": "Latn",
    "vi": "Latn", "id": "Latn", "ms": "Latn", "zh": "Hani", "ja": "Jpan", "ko": "Kore", "ru": "Cyrl", "uk": "Cyrl",
    "bg": "Cyrl", "ar": "Arab", "fa": "Arab", "ur": "Arab", "hi": "Deva", "he": "Hebr", "el": "Grek", "th": "Thai",
}
# Scripts that name one language here.
_ONLY_LANGUAGE = {"Grek": "el", "Thai": "th", "Hebr": "he"}
UNDETERMINED = "und"
_HAN_WEIGHT = 4
OTHER = "other"
DEFAULT_LANGUAGES: tuple[str, ...] = ("en",)

# (first code point, last code point, script), searched in order; letters outside these count for nothing.
_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x41, 0x5A, "Latn"), (0x61, 0x7A, "Latn"), (0xC0, 0x24F, "Latn"), (0x1E00, 0x1EFF, "Latn"),
    (0x370, 0x3FF, "Grek"), (0x400, 0x52F, "Cyrl"), (0x590, 0x5FF, "Hebr"), (0x600, 0x6FF, "Arab"),
    (0x750, 0x77F, "Arab"), (0x900, 0x97F, "Deva"), (0xE00, 0xE7F, "Thai"), (0x1100, 0x11FF, "Hang"),
    (0x3040, 0x30FF, "Kana"), (0x3130, 0x318F, "Hang"), (0x3400, 0x4DBF, "Hani"), (0x4E00, 0x9FFF, "Hani"),
    (0xAC00, 0xD7AF, "Hang"), (0xF900, 0xFAFF, "Hani"),
)


def script_counts(text: str) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for char in text:
        point = ord(char)
        if point < 0x41:
            continue
        for first, last, script in _RANGES:
            if first <= point <= last:
                counts[script] += 1
                break
    return counts


def detect_language(text: str) -> str:
    """An ISO 639-1 code where the script decides it, else `und-<Script>`, or `und` for a text without letters."""
    counts = script_counts(text)
    if not counts:
        return UNDETERMINED
    if counts["Kana"]:
        return "ja"
    if counts["Hang"] and counts["Hang"] >= counts["Hani"]:
        return "ko"
    script, _ = counts.most_common(1)[0]
    # A Han character carries about a word, four Latin letters or so: Chinese news with a ticker in it is Chinese.
    if counts["Hani"] and counts["Hani"] * _HAN_WEIGHT >= sum(counts.values()) - counts["Hani"]:
        return "zh"
    return _ONLY_LANGUAGE.get(script, f"{UNDETERMINED}-{script}")


def bundle_languages(manifest: Mapping[str, Any]) -> tuple[str, ...]:
    """The languages a bundle says it was trained for (manifest `languages`), ["en"] when it does not say."""
    languages = manifest.get("languages")
    if not isinstance(languages, list) or not languages:
        return DEFAULT_LANGUAGES
    return tuple(str(language).lower().split("-")[0] for language in languages)


def record_language(value: Mapping[str, Any]) -> tuple[str, bool]:
    """(language, whether the producer gave it) for a scored or input record."""
    given = value.get("lang")
    if isinstance(given, str) and given.strip():
        return given.strip().lower().split("-")[0].split("_")[0], True
    return detect_language(str(value.get("text") or "")), False


def covers(languages: Sequence[str], language: str) -> bool:
    """Whether a bundle for `languages` covers a text in `language` (a code, `und-<Script>` or `und`)."""
    if language == UNDETERMINED:
        return True  # digits, emoji, punctuation: nothing to be wrong about
    if language.startswith(UNDETERMINED + "-"):
        script = language.split("-", 1)[1]
        return any(SCRIPT_OF.get(known) == script for known in languages)
    return language in languages


def metric_label(language: str, languages: Iterable[str]) -> str:
    """A bounded label value: known codes, the bundle's own, detected scripts; anything else is `other`."""
    if language in SCRIPT_OF or language in languages or language.startswith(UNDETERMINED):
        return language if len(language) <= 12 else OTHER
    return OTHER


class LanguageMix:
    """Records per language label since the worker started, for /status (counts only, no texts)."""

    def __init__(self) -> None:
        self._counts: collections.Counter[str] = collections.Counter()
        self._uncovered: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def add(self, label: str, covered: bool) -> None:
        with self._lock:
            self._counts[label] += 1
            if not covered:
                self._uncovered[label] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            total = sum(self._counts.values())
            return {"records": dict(self._counts.most_common()), "uncovered": dict(self._uncovered.most_common()),
                    "uncovered_share": round(sum(self._uncovered.values()) / total, 6) if total else 0.0}
