"""The README's Python quick start runs as written, from the workspace folder."""

from __future__ import annotations

import os
import re

from conftest import WORKSPACE


def python_blocks() -> list[str]:
    readme = (WORKSPACE / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_quick_start_runs(capsys, monkeypatch):
    blocks = python_blocks()
    assert blocks, "the README's Python section has a python block"
    monkeypatch.chdir(WORKSPACE)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    # Three users with their session counts, then the sessions table of the sample.
    assert re.search(r"\[\{'user_id': 'user_\d+', 'sessions': \d+\}", out), out
    assert re.search(r"^\d+ sessions; \['source_relation', 'unique_session_id'", out, re.M), out
    assert os.getcwd() == str(WORKSPACE)
