"""Every Python code block in docs/ that is a complete program is run against a local server.

The convention, for anyone writing docs:

- A ``python`` block directly preceded by ``<!-- run -->`` is executed. All the marked
  blocks of one page run in order as **one** program (a page may build it up step by
  step), in a fresh interpreter whose ``VIBEFOLLOW_API_KEY`` / ``VIBEFOLLOW_BASE_URL``
  point at the ``vibefollow_server`` fixture. ``<!-- run: events=2 users=1 -->`` on a
  block says how many events / user upserts that block sends there; the test checks
  the page's totals exactly, after the program exited (and so flushed).
- ``<!-- no-run: <reason> -->`` opts a block out, e.g. a config file for another tool.
- Any other block must be a visible fragment: it uses names it does not define, has
  ``...``, or imports nothing. A block that looks like a complete program but carries
  neither marker fails ``test_complete_programs_are_marked``.
- Blocks that embed a file (``--8<-- "examples/..."``) are skipped: the examples have
  their own tests.
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from vf_otel.testing import VibefollowServer

DOCS = Path(__file__).resolve().parent.parent / "docs"
RUN_TIMEOUT = 120
_FENCE = re.compile(
    r"(?:^<!--\s*(?P<marker>run|no-run)(?::(?P<args>[^>]*?))?\s*-->\n)?"
    r"^```python\n(?P<code>.*?)^```",
    flags=re.MULTILINE | re.DOTALL,
)
_COUNT = re.compile(r"\b(events|users)=(\d+)\b")


@dataclass(frozen=True)
class Block:
    """One ``python`` code block of a page, with its marker."""

    page: str
    line: int
    code: str
    marker: str | None
    args: str

    def expected(self, what: str) -> int:
        """The ``events=`` / ``users=`` count the marker declares (0 if none)."""
        counts = dict(_COUNT.findall(self.args))
        return int(counts.get(what, 0))


def doc_blocks() -> list[Block]:
    """Every ``python`` block under docs/, in page order."""
    found = []
    for path in sorted(DOCS.rglob("*.md")):
        text = path.read_text()
        for match in _FENCE.finditer(text):
            found.append(
                Block(
                    page=str(path.relative_to(DOCS)),
                    line=text.count("\n", 0, match.start("code")) + 1,
                    code=match["code"],
                    marker=match["marker"],
                    args=match["args"] or "",
                )
            )
    return found


def looks_complete(code: str) -> bool:
    """True for a block that imports something, has no ``...`` and no undefined names."""
    if "--8<--" in code:
        return False
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    nodes = list(ast.walk(tree))
    if not any(isinstance(n, ast.Import | ast.ImportFrom) for n in nodes):
        return False
    if any(isinstance(n, ast.Constant) and n.value is Ellipsis for n in nodes):
        return False
    return not _free_names(nodes)


def _free_names(nodes: list[ast.AST]) -> set[str]:
    bound, loaded = set(dir(builtins)), set()
    for node in nodes:
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return loaded - bound


def _programs() -> dict[str, list[Block]]:
    pages: dict[str, list[Block]] = {}
    for block in doc_blocks():
        if block.marker == "run":
            pages.setdefault(block.page, []).append(block)
    return pages


PROGRAMS = _programs()


def test_there_are_programs_to_run() -> None:
    """The convention is in use: several pages have runnable blocks."""
    assert len(PROGRAMS) >= 4, sorted(PROGRAMS)


def test_complete_programs_are_marked() -> None:
    """A block that looks like a complete program is marked run (or no-run, with a reason)."""
    unmarked = [
        f"docs/{b.page}:{b.line}"
        for b in doc_blocks()
        if b.marker is None and looks_complete(b.code)
    ]
    assert unmarked == [], "mark these <!-- run --> or <!-- no-run: reason -->"
    reasonless = [f"docs/{b.page}:{b.line}" for b in doc_blocks() if b.marker == "no-run"]
    assert all(b.args.strip() for b in doc_blocks() if b.marker == "no-run"), reasonless


def _missing_imports(source: str) -> list[str]:
    """Top-level modules the program imports that this interpreter cannot find."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return sorted(name for name in names if importlib.util.find_spec(name) is None)


@pytest.mark.slow
@pytest.mark.parametrize("page", sorted(PROGRAMS))
def test_page_program_runs(page: str, vibefollow_server: VibefollowServer, tmp_path: Path) -> None:
    """The page's marked blocks, run in order, exit 0 and send what their markers say."""
    blocks = PROGRAMS[page]
    source = "\n".join(f"# docs/{b.page}:{b.line}\n{b.code}" for b in blocks)
    missing = _missing_imports(source)
    if missing:
        # e.g. CI's newest-SDK run installs vf-otel alone, without the integrations.
        pytest.skip(f"the page's program imports {', '.join(missing)}, not installed here")
    program = tmp_path / "program.py"
    program.write_text(source)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIBEFOLLOW_", "OTEL_"))}
    env |= {
        "VIBEFOLLOW_API_KEY": vibefollow_server.api_key,
        "VIBEFOLLOW_BASE_URL": vibefollow_server.base_url,
    }
    done = subprocess.run(  # noqa: S603 - our own interpreter and documentation
        [sys.executable, str(program)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(vibefollow_server.events) == sum(b.expected("events") for b in blocks)
    assert len(vibefollow_server.users) == sum(b.expected("users") for b in blocks)


@pytest.mark.parametrize(
    ("code", "complete"),
    [
        ("import vf_otel\nvf_otel.configure()\n", True),
        ("import vf_otel\nwith vf_otel.user(request.user.id):\n    pass\n", False),
        ("import vf_otel\nconfigured = vf_otel.configure()\n...\n", False),
        ('{"class": "vf_otel.VibefollowHandler"}\n', False),
        ("import logging\ndef f(x):\n    return logging.getLogger(x)\n", True),
        ('--8<-- "examples/quickstart.py"\n', False),
    ],
)
def test_looks_complete(code: str, complete: bool) -> None:
    """The classifier: imports, no ellipsis, no free names."""
    assert looks_complete(code) is complete
