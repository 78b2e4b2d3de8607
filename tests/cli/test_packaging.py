"""The distribution installs one import package, `sentiwatch`, and nothing else at the top level.

The parts keep their top-level folders (trainer/, exporter/, streamer/) but are mapped into `sentiwatch`
by setup.py; a module named `streamer` in a user's site-packages would collide with any other package of
that name, so the built wheel is inspected, and the installed environment is checked as well."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO_ROOT

PARTS = {"sentiwatch": "sentiwatch", "trainer": "sentiwatch/trainer", "exporter": "sentiwatch/exporter",
         "streamer": "sentiwatch/streamer"}


def test_the_wheel_holds_only_sentiwatch_and_every_module_of_every_part(tmp_path: Path) -> None:
    # Built from a copy: setuptools leaves a build/ folder in the source tree it builds.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    for name in PARTS:
        shutil.copytree(REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("sentiwatch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"sentiwatch"}, sorted(top_level)

    for folder, installed_as in PARTS.items():
        for source in (REPO_ROOT / folder).rglob("*.py"):
            relative = source.relative_to(REPO_ROOT / folder).as_posix()
            assert f"{installed_as}/{relative}" in names, f"{folder}/{relative} is missing from the wheel"


def test_the_parts_import_as_sentiwatch_subpackages_and_not_under_their_folder_names(tmp_path: Path) -> None:
    # Run outside the checkout: there, the folders themselves would be importable from the working directory.
    code = ("import importlib.util, sentiwatch.streamer, sentiwatch.trainer, sentiwatch.exporter; "
            "print([n for n in ('streamer', 'trainer', 'exporter') if importlib.util.find_spec(n)])")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
