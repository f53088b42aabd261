"""The layering is checked, not only drawn: `rag/` imports none of `server/`, `eval/`, `cluster/`, and
nothing imports the command line (the import-linter contract in pyproject.toml)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support import REPO

MAX_MODULE_LINES = 450  # "about 400": a module past this is doing more than one job


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                           "sys.exit(lint_imports_command())"], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"}, timeout=120)


def test_the_layers_hold():
    run = _lint_imports(REPO)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 kept, 0 broken" in run.stdout


def test_the_contract_fails_when_the_library_imports_an_upper_layer(tmp_path):
    """The check can fail: a copy of the packages with one upward import breaks the contract."""
    import shutil

    for pkg in ("rag", "server", "eval", "ragcli", "cluster"):
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "rag" / "retrieval.py").write_text("from server import app  # upward\n"
                                                   + (REPO / "rag" / "retrieval.py").read_text())
    run = _lint_imports(tmp_path)
    assert run.returncode != 0
    assert "rag.retrieval -> server" in run.stdout.replace("\n", " ") or "BROKEN" in run.stdout


def test_no_module_does_several_jobs_by_size():
    sizes = {p.relative_to(REPO).as_posix(): len(p.read_text().splitlines())
             for pkg in ("rag", "server", "eval", "ragcli", "cluster") for p in (REPO / pkg).rglob("*.py")}
    assert {p: n for p, n in sizes.items() if n > MAX_MODULE_LINES} == {}
