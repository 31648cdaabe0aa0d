"""The tree passes `ruff check` with the repository's ruff.toml (the ruff pinned in requirements.txt)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_check_passes():
    # --no-cache: the check writes no .ruff_cache into the tree.
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, f"ruff check found problems:\n{done.stdout}{done.stderr}"
