"""Nothing in the repository points to a file that is not in it: relative Markdown links
(and their #anchors, GitHub-style), every ``docs/*.md`` a file mentions, no DESIGN.md."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt", ".js", ".html", ".cfg", ".json", ".csv", ""}


def tracked() -> list[Path]:
    """The repository's files (git's list when there is one, else the tree without .venv)."""
    done = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True)
    if done.returncode == 0 and done.stdout.strip():
        return [ROOT / p for p in done.stdout.split("\n") if p and (ROOT / p).is_file()]
    return [p for p in ROOT.rglob("*") if p.is_file() and ".venv" not in p.parts and ".git" not in p.parts]


def _outside_code(text: str, *, inline: bool = True) -> list[str]:
    """The lines of ``text`` with fenced blocks blanked (and inline code removed, with ``inline``)."""
    lines, fence = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
            lines.append("")
            continue
        lines.append("" if fence else re.sub(r"`[^`]*`", "", line) if inline else line)
    return lines


def slugs(md: Path) -> set[str]:
    """The anchors GitHub gives a page's headings."""
    out: set[str] = set()
    seen: dict[str, int] = {}
    for line in _outside_code(md.read_text(encoding="utf-8"), inline=False):
        m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(2))
        s = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    return out


MARKDOWN = sorted(p for p in tracked() if p.suffix == ".md")


@pytest.mark.parametrize("md", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(md):
    problems = []
    for n, line in enumerate(_outside_code(md.read_text(encoding="utf-8")), 1):
        for target in LINK.findall(line):
            if re.match(r"^[a-z]+:", target) or target.startswith("//"):
                continue
            path, _, anchor = target.partition("#")
            dest = (md.parent / path).resolve() if path else md
            if not dest.exists():
                problems.append(f"{n}: {target}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in slugs(dest):
                problems.append(f"{n}: {target}: no heading for #{anchor}")
    assert not problems, problems


def test_every_docs_page_mentioned_exists_and_design_md_is_not_mentioned():
    problems = []
    for p in tracked():
        if p.suffix not in TEXT_SUFFIXES or p == Path(__file__):
            continue
        try:
            text = p.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        rel = p.relative_to(ROOT)
        problems += [f"{rel}: {m}" for m in set(re.findall(r"docs/[\w.-]+\.md", text)) if not (ROOT / m).exists()]
        if "DESIGN.md" in text:
            problems.append(f"{rel}: mentions DESIGN.md, which is not in the repository")
    assert not problems, problems


def test_the_readme_is_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 300
