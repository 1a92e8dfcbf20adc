"""The one way the benchmark scripts write their tables: atomically, and into their own marked
section of ``benchmarks/README.md`` (``<!-- {section}:start -->`` … ``<!-- {section}:end -->``,
appended at the end the first time)."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it (never half-written)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def update_readme(section: str, table: str, readme: Path = README) -> None:
    """Replace the marked ``section`` of ``readme`` with ``table`` (or append the section)."""
    text = readme.read_text()
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{start}\n{table}\n{end}{tail}"
    else:
        text = f"{text.rstrip()}\n\n{start}\n{table}\n{end}\n"
    write_atomic(readme, text)
