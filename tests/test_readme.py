"""The README opens with exactly two set-up commands, and CI runs the second one."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_opens_with_the_two_commands_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    head = readme.split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)\n```", head, re.S)
    assert len(blocks) == 2 and all("\n" not in b for b in blocks), blocks
    serve, test = blocks
    assert "uv sync --locked --extra demo" in serve and serve.endswith("cdms serve")
    assert "--extra dev" in test and test.endswith("python -m pytest")
    assert test in (ROOT / ".ci" / "run").read_text().splitlines()
