"""Maps the parts' top-level folders into the one import package `sentiwatch`.

trainer/, exporter/ and streamer/ stay at the top of the repository but install as `sentiwatch.trainer`,
`sentiwatch.exporter` and `sentiwatch.streamer`, so nothing but `sentiwatch` lands in site-packages.
The package list is found here rather than written in pyproject.toml because an image copies only the
folders it needs (the streamer image has no trainer/ or exporter/); a part whose folder is absent is
simply not installed. Everything else about the distribution is in pyproject.toml.
"""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
PARTS = {"sentiwatch": "sentiwatch", "sentiwatch.trainer": "trainer", "sentiwatch.exporter": "exporter",
         "sentiwatch.streamer": "streamer"}

package_dir: dict[str, str] = {}
packages: list[str] = []
for package, folder in PARTS.items():
    if not (ROOT / folder / "__init__.py").exists():
        continue
    package_dir[package] = folder
    packages.append(package)
    packages += [f"{package}.{sub}" for sub in find_packages(str(ROOT / folder))]

setup(packages=packages, package_dir=package_dir)
