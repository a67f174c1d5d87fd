"""The documentation site builds with ``mkdocs build --strict`` and indexes every registered method."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lightning_unlearn.methods import available_methods

REPO = Path(__file__).resolve().parents[1]


def test_mkdocs_build_strict(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    built = {p.relative_to(tmp_path / "site").as_posix() for p in (tmp_path / "site").rglob("index.html")}
    for page in ("index.html", "getting-started/index.html", "cli/index.html", "distributed/index.html",
                 "methods/index.html", "metrics/index.html"):
        assert page in built, page
    # auto navigation: every page under docs/methods and docs/metrics is built and linked from the nav
    home = (tmp_path / "site" / "index.html").read_text()
    for sub in ("methods", "metrics"):
        for md in (REPO / "docs" / sub).glob("*.md"):
            target = f"{sub}/" if md.stem == "index" else f"{sub}/{md.stem}/"
            assert f"{sub}/{md.stem}/index.html" in built or md.stem == "index", md
            assert target in home, f"{md} is not in the navigation"
    # the API reference is generated from the docstrings (mkdocstrings) and holds the key public symbols
    api = tmp_path / "site" / "api"
    for md in (REPO / "docs" / "api").glob("*.md"):
        page = "api/" if md.stem == "index" else f"api/{md.stem}/"
        assert f"{page}index.html" in built and page in home, f"{md} is not built or not in the navigation"
    expected = {
        "methods": ["lightning_unlearn.UnlearningMethod", "lightning_unlearn.SU", "lightning_unlearn.NaivePS",
                    "lightning_unlearn.UGradSLPlus", "lightning_unlearn.register_method"],
        "data": ["lightning_unlearn.UnlearningDataModule", "lightning_unlearn.ClassForget", "lightning_unlearn.IndexForget"],
        "request": ["lightning_unlearn.request.UnlearningOutcome", "lightning_unlearn.request.ServeRequest",
                    "lightning_unlearn.request.UnlearningTargetWarning"],
        "entry-points": ["lightning_unlearn.unlearn", "lightning_unlearn.evaluate"],
        "metrics": ["lightning_unlearn.metrics.MIAEfficacy", "lightning_unlearn.UnlearningReport"],
        "callbacks": ["lightning_unlearn.callbacks.PrototypeRecorder"],
        "models": ["lightning_unlearn.Classifier", "lightning_unlearn.Anatomy"],
        "loading": ["lightning_unlearn.methods.load_model_weights"],
    }
    for page, symbols in expected.items():
        html = (api / page / "index.html").read_text()
        for symbol in symbols:
            assert f'id="{symbol}"' in html, f"{symbol} is not documented in api/{page}"
    su = (api / "methods" / "index.html").read_text()
    assert "SPA probability left on the forgotten label" in su  # docstring text, not only the heading
    assert ":class:`" not in su and ":func:`" not in su  # Sphinx roles are rendered as code (docs/griffe_sphinx_roles.py)


def test_methods_index_lists_every_registered_method():
    index = (REPO / "docs" / "methods" / "index.md").read_text()
    missing = [m for m in available_methods() if f"`{m}`" not in index]
    assert not missing, f"docs/methods/index.md does not list {missing}"


def test_readme_starts_with_the_two_commands():
    lines = [line for line in (REPO / "README.md").read_text().splitlines() if line.strip()]
    commands = [line.strip() for line in lines[:8] if line.strip().startswith("make ")]
    assert [c.split()[1] for c in commands[:2]] == ["demo", "test"]


def test_every_python_block_of_the_readme_runs_as_written(tmp_path):
    """Each ```python block of the README, run as a script in an empty folder (a subprocess, one thread)."""
    import os
    import re

    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert len(blocks) >= 2
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    for number, block in enumerate(blocks):
        script = tmp_path / f"block{number}.py"
        script.write_text(block)
        proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"README python block {number}:\n{block}\n--- stderr\n{proc.stderr[-3000:]}"
        if "MyModel" in block:  # the block on the user's own model says what it prints
            assert proc.stdout.strip().splitlines()[-1] == "True", proc.stdout[-2000:]
