"""The Python code of the documentation runs as written (issue "Dispersion inside real training
runs", part 5; before, the README's first example stopped at ``NameError: name 'model' is not
defined``).

Every fenced ```` ```python ```` block of ``README.md`` and of every Markdown file under ``docs/``
(recursively; not a built site under ``docs/_build``) is run on its own, in a fresh namespace (``__name__ == "__main__"``) and a fresh
temporary working directory, so a block must define what it uses (a tiny model, data loader and
task loss) and whatever it writes stays out of the repository. A block preceded, on the line
before its fence (blank lines between are allowed), by the HTML comment ``<!-- skip-test -->``
is skipped — only for shell-like or GPU-only code. ``test_python_blocks_are_found`` reports how
many blocks there are to run and fails when there are none.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")

SKIP_MARK = "<!-- skip-test -->"
#: An opening fence whose info string starts with the word ``python``, its body, and the closing
#: fence of the same indentation and at least as many backticks (CommonMark).
FENCE = re.compile(r"^(?P<indent>[ ]{0,3})(?P<ticks>`{3,})[ \t]*python(?:[ \t][^\n]*)?\n(?P<code>.*?)"
                   r"^(?P=indent)(?P=ticks)`*[ \t]*$", re.M | re.S)


def markdown_files() -> list[Path]:
    """README.md and every ``*.md`` under docs/ (when present), in a fixed order; folders whose
    name starts with ``_`` or ``.`` (a built site, ``docs/_build``) are not sources."""
    docs = ROOT / "docs"
    found = sorted(docs.rglob("*.md")) if docs.is_dir() else []
    return [ROOT / "README.md"] + [p for p in found
                                   if not any(part.startswith(("_", ".")) for part in p.relative_to(docs).parts[:-1])]


def blocks_of(text: str, name: str) -> list[tuple[str, str, bool]]:
    """The ```python blocks of the Markdown ``text``: (``name:line`` of the opening fence, the
    code with the fence's indentation removed, whether it is marked skip-test)."""
    out = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        skip = text[: m.start()].rstrip().endswith(SKIP_MARK)
        indent = len(m.group("indent"))
        code = "".join(ln[indent:] if ln[:indent].isspace() else ln
                       for ln in m.group("code").splitlines(keepends=True))
        out.append((f"{name}:{line}", code, skip))
    return out


def python_blocks() -> list[tuple[str, str, bool]]:
    """Every ```python block of :func:`markdown_files`, as :func:`blocks_of` gives them."""
    return [b for path in markdown_files()
            for b in blocks_of(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]


BLOCKS = python_blocks()


@pytest.mark.parametrize("where,code,skip", BLOCKS, ids=[b[0] for b in BLOCKS])
def test_python_block_runs(where, code, skip, tmp_path, monkeypatch):
    if skip:
        pytest.skip(f"{where} is marked {SKIP_MARK}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    exec(compile(code, where, "exec"), {"__name__": "__main__"})  # noqa: S102 - the documentation's own code


def test_python_blocks_are_found(capsys):
    run = [w for w, _, skip in BLOCKS if not skip]
    skipped = [w for w, _, skip in BLOCKS if skip]
    with capsys.disabled():
        print(f"\ndocumentation code: {len(run)} python block(s) run, {len(skipped)} marked {SKIP_MARK}"
              f"{' (' + ', '.join(skipped) + ')' if skipped else ''}, from {len(markdown_files())} Markdown file(s)")
    assert run, f"no runnable ```python block in {[str(p.relative_to(ROOT)) for p in markdown_files()]}"


def test_blocks_are_found_with_their_lines_and_skip_marks():
    text = ("# t\n\n```python\nx = 1\n```\n\n<!-- skip-test -->\n\n```python\nimport cuda_only\n```\n"
            "```bash\nls\n```\n  ```python title\n  y = 2\n    z = 3\n  ```\n````python\n```\n````\n")
    assert blocks_of(text, "t.md") == [("t.md:3", "x = 1\n", False), ("t.md:9", "import cuda_only\n", True),
                                       ("t.md:15", "y = 2\n  z = 3\n", False), ("t.md:19", "```\n", False)]
