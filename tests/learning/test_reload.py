"""Model switch without a restart, without Kafka: the bundle watcher, the slot and shadow scoring with the
real tiny bundle and ONNX Runtime (the broker test is tests/learning/test_reload_integration.py)."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from sentiwatch.config import Settings
from sentiwatch.streamer.inference.reload import (
    REFUSED,
    SWITCHED,
    BundleWatcher,
    ModelSlot,
    ReloadMetrics,
    bundle_identity,
    bundle_loader,
)
from sentiwatch.streamer.scoring.stage import RawMessage
from sentiwatch.streamer.scoring.topics import TopicCap
from tests.learning.test_compare import permuted_bundle


def versioned_copy(bundle: Path, dest: Path, version: str) -> Path:
    """A copy of `bundle` whose manifest names another version (the manifest is not among the hashed files)."""
    shutil.copytree(bundle, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["model_version"] = version
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


def point(link: Path, target: Path) -> None:
    """Switch a symlink atomically, the way a deploy job would (new link, rename over the old one)."""
    tmp = link.with_name(link.name + ".new")
    os.symlink(target, tmp)
    os.replace(tmp, link)


def messages(n: int, start: int = 0) -> list[RawMessage]:
    return [RawMessage(json.dumps({"id": f"r{i}", "text": f"shares fall after report {i}"}).encode(),
                       "sentiwatch.texts", 0, i, 1_700_000_000.0) for i in range(start, start + n)]


@pytest.fixture
def setup(tiny_bundle_dir, tmp_path):
    v1 = versioned_copy(tiny_bundle_dir, tmp_path / "v1", "model-v1")
    v2 = versioned_copy(tiny_bundle_dir, tmp_path / "v2", "model-v2")
    link = tmp_path / "current"
    os.symlink(v1, link)
    settings = Settings(intra_op_threads=1)
    load = bundle_loader(settings, TopicCap(10))
    registry = CollectorRegistry()
    metrics = ReloadMetrics(registry)
    switches: list[tuple[str, str]] = []
    slot = ModelSlot(load(str(link)), metrics, on_switch=lambda old, new: switches.append((old["version"],
                                                                                        new["version"])))
    return {"v1": v1, "v2": v2, "link": link, "load": load, "registry": registry, "metrics": metrics,
            "slot": slot, "switches": switches, "tmp": tmp_path}


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def versions(outcome) -> set[str]:
    return {json.loads(out.value)["model_version"] for out in outcome.scored}


def test_identity_follows_symlink_and_content(setup):
    link, v1, v2 = setup["link"], setup["v1"], setup["v2"]
    first = bundle_identity(link)
    assert first is not None and first.resolved == str(v1.resolve())
    assert bundle_identity(link) == first
    point(link, v2)
    second = bundle_identity(link)
    assert second is not None and second.resolved == str(v2.resolve()) and second != first
    # The same folder with a rewritten manifest (an in-place update) is another bundle too.
    (v2 / "manifest.json").write_text((v2 / "manifest.json").read_text() + " ")
    assert bundle_identity(link) != second
    assert bundle_identity(setup["tmp"] / "nowhere") is None


def test_symlink_switch_loads_the_new_bundle_once_it_holds_still(setup):
    slot, link = setup["slot"], setup["link"]
    watcher = BundleWatcher(link, slot, setup["load"], setup["metrics"])
    assert watcher.check() is None  # nothing new
    before = slot.score(messages(5))
    assert versions(before) == {"model-v1"}

    point(link, setup["v2"])
    assert watcher.check() is None  # just changed: could be a copy in progress
    assert slot.current.version == "model-v1"
    assert watcher.check() == SWITCHED
    assert slot.current.version == "model-v2"
    assert setup["switches"] == [("model-v1", "model-v2")]
    assert versions(slot.score(messages(5, 5))) == {"model-v2"}
    assert watcher.check() is None  # the serving bundle is not loaded again
    assert sample(setup["registry"], "sentiwatch_model_reloads_total", result="switched") == 1

    # Rolling back is one more switch of the link.
    point(link, setup["v1"])
    watcher.check()
    assert watcher.check() == SWITCHED
    assert slot.current.version == "model-v1"


def test_folder_renamed_over_the_old_one_is_a_new_bundle(setup, tiny_bundle_dir):
    tmp = setup["tmp"]
    served = versioned_copy(tiny_bundle_dir, tmp / "served", "model-a")
    slot = ModelSlot(setup["load"](str(served)), setup["metrics"])
    watcher = BundleWatcher(served, slot, setup["load"], setup["metrics"])
    staged = versioned_copy(tiny_bundle_dir, tmp / "staged", "model-b")
    # Swap the folders the way `mv -T` cannot when the target is not empty: old out of the way, new in.
    os.rename(served, tmp / "old")
    os.rename(staged, served)
    watcher.check()
    assert watcher.check() == SWITCHED
    assert slot.current.version == "model-b"


def test_tampered_bundle_is_refused_and_the_old_one_keeps_serving(setup, caplog):
    slot, link = setup["slot"], setup["link"]
    bad = versioned_copy(setup["v1"], setup["tmp"] / "bad", "model-bad")
    onnx = next(bad.glob("*.onnx"))
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    watcher = BundleWatcher(link, slot, setup["load"], setup["metrics"])
    point(link, bad)
    watcher.check()
    with caplog.at_level(logging.ERROR):
        assert watcher.check() == REFUSED
    assert "refused" in caplog.text and onnx.name in caplog.text and "model-v1 keeps serving" in caplog.text
    assert slot.current.version == "model-v1"
    assert versions(slot.score(messages(3))) == {"model-v1"}
    assert sample(setup["registry"], "sentiwatch_model_reloads_total", result="refused") == 1
    assert watcher.check() is None  # refused once, not again at every look
    assert sample(setup["registry"], "sentiwatch_model_reloads_total", result="refused") == 1

    # A bundle whose labels do not fit the graph is refused the same way.
    labels = versioned_copy(setup["v2"], setup["tmp"] / "labels", "model-labels")
    manifest = json.loads((labels / "manifest.json").read_text())
    manifest["outputs"]["sentiment_logits"] = 5
    (labels / "manifest.json").write_text(json.dumps(manifest))
    point(link, labels)
    watcher.check()
    assert watcher.check() == REFUSED
    assert slot.current.version == "model-v1"

    # Pointing back at a good bundle switches as usual.
    point(link, setup["v2"])
    watcher.check()
    assert watcher.check() == SWITCHED and slot.current.version == "model-v2"


def test_shadow_scores_beside_then_switches_and_exports_agreement(setup):
    slot, registry = setup["slot"], setup["registry"]
    slot.offer(setup["load"](str(setup["v2"])), shadow_records=12)
    assert slot.shadowing == "model-v2"
    first = slot.score(messages(8))
    assert versions(first) == {"model-v1"}  # the serving model's answers are the ones sent
    assert slot.current.version == "model-v1"
    assert sample(registry, "sentiwatch_model_shadow_records_total", version="model-v2") == 8
    second = slot.score(messages(8, 8))
    assert versions(second) == {"model-v1"}
    assert slot.current.version == "model-v2" and slot.shadowing is None
    # Same weights under two names: the shadow must agree on every label.
    assert sample(registry, "sentiwatch_model_shadow_agreement", version="model-v2") == 1.0
    assert versions(slot.score(messages(4, 16))) == {"model-v2"}
    assert setup["switches"] == [("model-v1", "model-v2")]
    assert sample(registry, "sentiwatch_model_reloads_total", result="switched") == 1

    # A model that names its columns differently disagrees on every label, and the gauge says so.
    permuted = permuted_bundle(setup["v1"], setup["tmp"] / "permuted")
    slot.offer(setup["load"](str(permuted)), shadow_records=5)
    slot.score(messages(6, 20))
    assert sample(registry, "sentiwatch_model_shadow_agreement", version="permuted") == 0.0
    assert slot.current.version == "permuted"

