"""Every code block of the README and of docs/getting-started.md runs as written.

Each ```python block runs as a script, each ```bash block as ``bash -e`` script, in an empty folder
(a subprocess of one intra-op thread, the checkout on PYTHONPATH, the environment's ``bin`` first on
PATH) that holds only a link to the checkout's ``examples/``, as a clone's root would.

A few commands cannot run inside the test suite; they are checked another way, and this is the
complete list (``NOT_RUN``):

* ``make <target>``: ``make demo`` is the full benchmark (minutes) and ``make test`` is this test
  suite; the test checks that the Makefile defines the target.
* ``pip install <spec>``: would change the environment that runs the tests; the test checks that
  the spec names this project (``.``) and extras that ``pyproject.toml`` declares.
* commands with ``--trainer.accelerator cuda`` (the DDP examples need 4 GPUs), and ``torchrun``
  (it launches them): they run with ``--print_config`` appended, which parses and checks every
  option and config file without training; ``torchrun ... -m MODULE`` runs as ``python -m MODULE``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "docs/getting-started.md")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
NOT_RUN = ("make ", "pip install ", "--trainer.accelerator cuda", "torchrun ")
BUDGET_S = 480  # per block; measured on 2 cores shared with other jobs: the README's CLI block 294 s, others <= 162 s


def code_blocks() -> list[tuple[str, int, str, str]]:
    """``(document, number, language, text)`` of every fenced block of ``DOCUMENTS``, in order."""
    found = []
    for document in DOCUMENTS:
        for number, match in enumerate(FENCE.finditer((REPO / document).read_text())):
            found.append((document, number, match.group(1), match.group(2)))
    return found


BLOCKS = code_blocks()


def test_every_block_is_python_or_bash():
    assert BLOCKS and all(language in ("python", "bash") for _, _, language, _ in BLOCKS), [
        (d, n, lang) for d, n, lang, _ in BLOCKS if lang not in ("python", "bash")
    ]
    for document in DOCUMENTS:
        kinds = {language for d, _, language, _ in BLOCKS if d == document}
        assert kinds == {"python", "bash"}, f"{document} has {kinds}"


def _environment() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", PYTHONPATH=str(REPO))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _folder(tmp_path: Path) -> Path:
    """An empty working folder with the checkout's ``examples/``, as in a clone's root."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "examples").symlink_to(REPO / "examples", target_is_directory=True)
    return work


def _commands(block: str) -> list[str]:
    """The block's commands, one per entry, continuation lines joined."""
    return [line for line in block.replace("\\\n", " ").splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _check_not_run(command: str) -> str | None:
    """Check a command of ``NOT_RUN`` without running it; return what runs instead (or None)."""
    words = shlex.split(command, comments=True)
    if words[0] == "make":
        makefile = (REPO / "Makefile").read_text()
        for target in words[1:]:
            assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"the Makefile has no target {target!r}"
        return None
    if words[:2] == ["pip", "install"]:
        extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        for spec in words[2:]:
            match = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", spec)
            assert match, f"`pip install {spec}` does not install this project"
            missing = [e for e in (match.group(1) or "").split(",") if e and e not in extras]
            assert not missing, f"pyproject.toml declares no extra {missing}"
        return None
    if words[0] == "torchrun":
        assert (Path(sys.executable).parent / "torchrun").exists(), "torchrun is not installed beside Python"
        module = words.index("-m")
        words = ["python", *words[module:]]
    return shlex.join(words + ["--print_config"]) + " > /dev/null"


def _script(block: str) -> str:
    lines = []
    for command in _commands(block):
        if any(marker in command if marker.startswith("--") else command.lstrip().startswith(marker) for marker in NOT_RUN):
            replacement = _check_not_run(command)
            if replacement:
                lines.append(replacement)
        else:
            lines.append(command)
    return "\n".join(lines) + "\n"


def _run(command: list[str], work: Path, what: str, text: str) -> subprocess.CompletedProcess:
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=work, env=_environment(), capture_output=True, text=True, timeout=BUDGET_S)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, (
        f"{what} failed after {seconds:.0f} s:\n{text}\n--- stdout\n{proc.stdout[-2000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    )
    return proc


@pytest.mark.parametrize(
    ("document", "number", "language", "text"), BLOCKS, ids=[f"{d.split('/')[-1]}-{n}-{lang}" for d, n, lang, _ in BLOCKS]
)
def test_block_runs_as_written(tmp_path, document, number, language, text):
    work = _folder(tmp_path)
    what = f"{document} block {number} ({language})"
    if language == "python":
        script = work / "block.py"
        script.write_text(text)
        proc = _run([sys.executable, str(script)], work, what, text)
        last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        if "print(unlearned.unlearning_outcome.reached)" in text:  # the block says it prints True
            assert last == "True", proc.stdout[-2000:]
        if "print(unlearned.unlearning_outcome.summary())" in text:  # the request the block shows is served
            assert " reached (" in last and "NOT reached" not in last, proc.stdout[-2000:]
    else:
        script = work / "block.sh"
        script.write_text(_script(text))
        _run(["bash", "-e", str(script)], work, what, script.read_text())


def test_not_run_commands_are_recognised():
    """The commands of NOT_RUN are checked, not skipped: a wrong target, extra or option fails."""
    with pytest.raises(AssertionError, match="no target 'nonsense'"):
        _check_not_run("make nonsense")
    with pytest.raises(AssertionError, match="no extra"):
        _check_not_run("pip install '.[nonsense]'")
    with pytest.raises(AssertionError, match="does not install this project"):
        _check_not_run("pip install torch")
    assert _check_not_run("make demo   # comment") is None
    assert _check_not_run("pip install '.[bench]'") is None
    assert _check_not_run("torchrun --nproc_per_node 4 -m lightning_unlearn.cli unlearn --x 1").startswith(
        "python -m lightning_unlearn.cli unlearn --x 1 --print_config"
    )
