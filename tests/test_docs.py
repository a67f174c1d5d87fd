"""The documentation site builds with ``mkdocs build --strict`` and indexes every registered method.

The README's and the getting-started page's code blocks run in ``tests/test_readme_blocks.py``.
"""

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


def test_the_limits_table_lists_every_method_that_declares_a_limit():
    from lightning_unlearn.methods import get_method

    index = (REPO / "docs" / "methods" / "index.md").read_text()
    table = index.split("## What a method cannot serve", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")}
    declared = {m for m in available_methods() if get_method(m).limitation}
    assert declared <= rows, f"docs/methods/index.md's limits table lacks {sorted(declared - rows)}"
    assert not rows - declared - {"method"}, f"the limits table lists methods that declare no limit: {sorted(rows - declared)}"


def test_readme_starts_with_the_two_commands():
    lines = [line for line in (REPO / "README.md").read_text().splitlines() if line.strip()]
    commands = [line.strip() for line in lines[:8] if line.strip().startswith("make ")]
    assert [c.split()[1] for c in commands[:2]] == ["demo", "test"]


def _method_pages() -> dict[str, Path]:
    """Registered method name -> its page, from the links of docs/methods/index.md's table."""
    import re

    index = (REPO / "docs" / "methods" / "index.md").read_text()
    return {m: REPO / "docs" / "methods" / page for m, page in re.findall(r"^\| `(\w+)` \|.*\(\[page\]\(([\w-]+\.md)\)\)", index, re.M)}


def test_every_method_page_cites_its_paper_and_lists_its_deviations():
    import re

    pages = _method_pages()
    assert sorted(pages) == sorted(available_methods())
    for name, page in pages.items():
        text = page.read_text()
        assert "## Deviations from the paper and the authors' code" in text, page
        assert re.search(r"\*\*Papers?[.:]?\*\*", text), f"{page} names no paper"
        assert re.search(r"arXiv:\d{4}\.\d{4,5}|DOI 10\.\d+/|proceedings\.mlr\.press|openreview\.net", text), page
        assert re.search(r"\b(19|20)\d\d\b", text), f"{page} gives no year"
        assert "**Stopping:**" in text, f"{page} does not say how a run ends"
    for page in (REPO / "docs").rglob("*.md"):
        text = page.read_text()
        assert "SPEC" not in text, f"{page} mentions a file that is not in the repository"
        assert not re.search(r"\b00[0-9]_[0-9a-f]{6}|paper 00[0-9]\b", text), f"{page} names a paper by file number"


def test_method_pages_state_the_code_defaults():
    """Every `name=value` of a page's **Defaults:** line is the constructor's default (pages stay current)."""
    import ast
    import inspect
    import re

    from lightning_unlearn.methods import get_method
    from lightning_unlearn.methods.base import UnlearningMethod

    base = {k: p.default for k, p in inspect.signature(UnlearningMethod.__init__).parameters.items()}
    for name, page in _method_pages().items():
        own = {k: p.default for k, p in inspect.signature(get_method(name).__init__).parameters.items()}
        defaults = {**base, **own}
        line = re.search(r"\*\*Defaults:\*\*(.*?)(?=\n- \*\*|\n\n)", page.read_text(), re.S)
        assert line, f"{page} has no **Defaults:** line"
        stated = re.findall(r"`(\w+)=([^`]+)`", line.group(1))
        assert stated, f"{page}'s defaults name no argument"
        for argument, value in stated:
            assert argument in defaults, f"{page}: {argument} is not an argument of {name}"
            assert ast.literal_eval(value) == defaults[argument], f"{page}: {argument}={value}, code: {defaults[argument]!r}"
