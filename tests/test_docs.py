"""Every Python block of README.md and docs/*.md runs as written.

The blocks of one page run in order in one fresh process (a block may build on
the blocks before it on the same page), in a temporary folder, on JAX. A page
is one test, so a broken block names its page. A block that needs what one
machine cannot give (several hosts) is fenced ``python multi-host``: it is
shown as Python and listed by ``test_blocks_not_run``, not run.
"""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def python_blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text(encoding="utf-8"))


def script(page: Path) -> str:
    """The page's blocks, each announced, so a failure says which block."""
    parts = []
    for i, block in enumerate(python_blocks(page), 1):
        parts.append(f"print('--- block {i}', flush=True)\n{block}")
    return "\n".join(parts)


@pytest.mark.slow
@pytest.mark.parametrize(
    "page",
    [p for p in PAGES if python_blocks(p)],
    ids=lambda p: p.relative_to(ROOT).as_posix(),
)
def test_code_blocks_run(page, tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "jax", "MPLBACKEND": "Agg"}
    result = subprocess.run(
        [sys.executable, "-c", script(page)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    announced = re.findall(r"--- block (\d+)", result.stdout)
    failed = announced[-1] if announced else "?"
    assert result.returncode == 0, (
        f"{page.name}: block {failed} failed:\n{result.stderr[-3000:]}"
    )


def test_blocks_not_run():
    fences = {
        page.relative_to(ROOT).as_posix(): re.findall(
            r"^```python (.+)$", page.read_text(encoding="utf-8"), re.MULTILINE
        )
        for page in PAGES
    }
    assert {page: f for page, f in fences.items() if f} == {
        "docs/scaling.md": ["multi-host"]
    }


def test_the_block_finder_sees_every_block():
    text = "x\n```python\na = 1\n```\n```bash\nls\n```\n```python\nb = a\n```\n"
    assert BLOCK.findall(text) == ["a = 1\n", "b = a\n"]


def test_generated_tables_go_between_their_markers_only(tmp_path):
    spec = importlib.util.spec_from_file_location("splice", ROOT / "tools/splice.py")
    splice = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(splice)
    page, table = tmp_path / "page.md", tmp_path / "table.md"
    page.write_text("text\n<!-- begin t -->\nold\n<!-- end t -->\nmore\n")
    table.write_text("| a |\n")
    assert splice.main([str(page), "t", str(table)]) == 0
    assert page.read_text() == "text\n<!-- begin t -->\n| a |\n<!-- end t -->\nmore\n"
    assert splice.main([str(page), "other", str(table)]) == 1  # no such markers
    assert "| a |" in page.read_text()


def test_documented_tables_have_their_markers():
    page = (ROOT / "docs/tutorial.md").read_text(encoding="utf-8")
    for name in ("demo-table", "regularized-seeds"):
        assert page.count(f"<!-- begin {name} -->") == 1, name
        assert "(generated)" not in page, "run the commands in the page's notes"
