"""The README's command examples, run as written, so that an example cannot drift from the code.

A fenced block the README marks ``<!-- runnable: ci ... -->`` runs in every test run; one marked
``<!-- runnable: slow ... -->`` (the main job: minutes) runs with ``CHAMELEON_SLOW_EXAMPLES=1``.
Each block runs as one bash script (``set -e``: a failing line fails it) in an empty folder, with the
installed ``bench`` and ``optimize`` first on the PATH.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"<!-- runnable: (\w+)[^>]*-->\s*\n```bash\n(.*?)```", re.S)


def runnable_blocks() -> list[tuple[str, str]]:
    return [(kind, body) for kind, body in _BLOCK.findall(README.read_text(encoding="utf-8"))]


def test_the_readme_marks_its_runnable_examples() -> None:
    kinds = [kind for kind, _ in runnable_blocks()]
    assert "ci" in kinds and "slow" in kinds and set(kinds) <= {"ci", "slow"}


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("index", range(len(runnable_blocks())))
def test_a_readme_example_runs_as_written(index: int, tmp_path: Path) -> None:
    kind, body = runnable_blocks()[index]
    if kind == "slow" and os.environ.get("CHAMELEON_SLOW_EXAMPLES") != "1":
        pytest.skip("a slow README example (CHAMELEON_SLOW_EXAMPLES=1 runs it)")
    script = tmp_path / "example.sh"
    script.write_text("set -euo pipefail\n" + body)
    scripts = str(Path(sys.executable).parent)  # the venv's bench and optimize
    result = subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=1800,
                            env={**os.environ, "PATH": scripts + os.pathsep + os.environ.get("PATH", "")},
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"README example {index} ({kind}) failed:\n{body}\n--- stderr\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr
