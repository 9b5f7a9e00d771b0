"""The documentation's generated parts, and the runner of its Python blocks.

    python tools/make_docs.py                     # regenerate docs/generated/ (recipes and conformance)
    python tools/make_docs.py --only recipes      # ... the recipe outputs alone (seconds)
    python tools/make_docs.py --check             # compare instead of writing; exit 1 on a difference
    python tools/make_docs.py run-blocks docs/optim.md   # run a page's Python blocks (what the tests do)

**Recipe figures.** Each recipe page is backed by a script in ``examples/``. The script
prints its results in sections, each opened by a line ``[name] title``; this tool runs
the script, cuts its output at those lines and writes each section to
``docs/generated/<script>/<name>.txt``, which the page includes with
``--8<-- "docs/generated/<script>/<name>.txt"`` (pymdownx.snippets). A page must include
every section of its script, once, in the order printed: the page then shows exactly what
the script prints, and no figure is typed by hand (tests/docs/test_recipes.py re-runs
each script and compares).

**The conformance matrix.** ``docs/generated/conformance.md`` is the output of
``refopt verify --markdown --dtype all`` with every framework installed, included by
docs/conventions.md.

**Python blocks.** Every fenced ``python`` block of README.md and docs/ runs: a page's
blocks are executed in order, in one namespace, in a scratch folder (snippet lines
expanded first, as the site does). A block that is deliberately not runnable has
``<!-- norun -->`` (or ``<!-- norun: why -->``) on the line before its fence.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "docs" / "generated"
CONFORMANCE = GENERATED / "conformance.md"


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A recipe page and the script behind it."""

    page: str  # relative to ROOT
    script: str  # relative to ROOT

    @property
    def stem(self) -> str:
        return Path(self.script).stem

    @property
    def folder(self) -> Path:
        return GENERATED / self.stem


RECIPES = [
    Recipe("docs/recipes/freezing.md", "examples/freezing_adam.py"),
    Recipe("docs/recipes/routing.md", "examples/routing_losses.py"),
    Recipe("docs/recipes/layerwise-lr.md", "examples/layerwise_lr.py"),
    Recipe("docs/recipes/weight-decay.md", "examples/weight_decay.py"),
    Recipe("docs/recipes/golden-trajectories.md", "examples/golden_trajectory.py"),
]

SECTION = re.compile(r"^\[([a-z0-9][a-z0-9-]*)\] ")
INCLUDE = re.compile(r"""^\s*-{1,}8<-{1,}\s+["']([^"']+)["']\s*$""")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)")
NORUN = re.compile(r"^\s*<!--\s*norun(?::.*)?\s*-->\s*$")


# -- pages and their Python blocks ------------------------------------------------------------------
def pages() -> list[Path]:
    """README.md and every page under docs/ (not the generated includes)."""
    docs = sorted(p for p in (ROOT / "docs").rglob("*.md") if GENERATED not in p.parents)
    return [ROOT / "README.md", *docs]


def _snippets():
    """The snippet preprocessor configured as in mkdocs.yml (base path: the repository)."""
    import markdown

    md = markdown.Markdown(
        extensions=["pymdownx.snippets"],
        extension_configs={"pymdownx.snippets": {"base_path": [str(ROOT)], "check_paths": True}},
    )
    return md.preprocessors["snippet"]


@dataclasses.dataclass
class Block:
    """One fenced block: where it starts (1-based line of the fence), its language, its
    code (dedented, snippet lines expanded), and whether it is marked ``<!-- norun -->``."""

    line: int
    lang: str
    code: str
    norun: bool


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a page, in order."""
    lines = path.read_text(encoding="utf-8").split("\n")
    out: list[Block] = []
    snip = None
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m.group("indent"), m.group("fence"), m.group("info").lower()
        start = i
        body: list[str] = []
        i += 1
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        while i < len(lines) and not closing.match(lines[i]):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        if i >= len(lines):
            raise ValueError(f"{path}:{start + 1}: a fence that is never closed")
        i += 1
        if any("8<-" in b for b in body):
            snip = snip or _snippets()
            body = snip.run(body)
        norun = start > 0 and bool(NORUN.match(lines[start - 1]))
        out.append(Block(start + 1, info, textwrap.dedent("\n".join(body)), norun))
    return out


def python_blocks(path: Path) -> list[Block]:
    return [b for b in blocks(path) if b.lang in ("python", "py")]


def run_blocks(path: Path) -> int:
    """Execute a page's Python blocks in order in one namespace, in a scratch folder (this
    process's working directory is changed); 0, or 1 after printing where it failed."""
    path = path.resolve()
    rel = path.relative_to(ROOT) if ROOT in path.parents else path
    todo = [b for b in python_blocks(path) if not b.norun]
    namespace: dict[str, object] = {"__name__": "__main__"}
    script = next((r.script for r in RECIPES if ROOT / r.page == path), None)
    if script is not None:  # a recipe page's blocks are its script's sections: run as that script
        namespace["__file__"] = str(ROOT / script)
    home = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="refopt-docs-") as scratch:
        os.chdir(scratch)
        try:
            for b in todo:
                try:
                    exec(compile(b.code, f"{rel}:{b.line}", "exec"), namespace)
                except BaseException:
                    print(f"{rel}: the Python block at line {b.line} failed:", file=sys.stderr)
                    traceback.print_exc()
                    return 1
        finally:
            os.chdir(home)
    return 0


# -- recipes ----------------------------------------------------------------------------------------
def run_script(script: str, cwd: str | Path | None = None) -> str:
    """A recipe script's standard output (run in a scratch folder); raises on failure."""
    with tempfile.TemporaryDirectory(prefix="refopt-example-") as scratch:
        env = {**os.environ, "MPLBACKEND": "Agg"}
        proc = subprocess.run(
            [sys.executable, str(ROOT / script)], capture_output=True, text=True, cwd=cwd or scratch, env=env
        )
    if proc.returncode != 0:
        raise RuntimeError(f"{script} exited with {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout


def sections(output: str, script: str = "the script") -> dict[str, str]:
    """The output cut at its ``[name] title`` lines: ``{name: text}`` in printed order."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        m = SECTION.match(line)
        if m:
            if m.group(1) in out:
                raise ValueError(f"{script}: section [{m.group(1)}] is printed twice")
            current = out[m.group(1)] = []
        elif current is None:
            raise ValueError(f"{script}: output before the first [section] line: {line!r}")
        current.append(line)
    return {name: "\n".join(lines).rstrip("\n") + "\n" for name, lines in out.items()}


def included(recipe: Recipe) -> list[str]:
    """The generated files the recipe's page includes, in page order (relative to ROOT)."""
    prefix = f"docs/generated/{recipe.stem}/"
    found = []
    for line in (ROOT / recipe.page).read_text(encoding="utf-8").splitlines():
        m = INCLUDE.match(line)
        if m and m.group(1).startswith(prefix):
            found.append(m.group(1))
    return found


def recipe_problems(recipe: Recipe, output: str) -> list[str]:
    """What keeps the page from showing exactly ``output`` (the script's stdout): a
    generated file that differs from its section or is missing, a stale extra file, and
    the page's includes not being every section once, in order."""
    problems = []
    secs = sections(output, recipe.script)
    for name, text in secs.items():
        f = recipe.folder / f"{name}.txt"
        if not f.exists():
            problems.append(f"{f.relative_to(ROOT)} is missing")
        elif f.read_text(encoding="utf-8") != text:
            problems.append(f"{f.relative_to(ROOT)} differs from what {recipe.script} prints now")
    extra = sorted(p.name for p in recipe.folder.glob("*.txt") if p.stem not in secs) if recipe.folder.exists() else []
    if extra:
        problems.append(f"{recipe.folder.relative_to(ROOT)} holds files of no section: {extra}")
    want = [f"docs/generated/{recipe.stem}/{name}.txt" for name in secs]
    have = included(recipe)
    if have != want:
        problems.append(f"{recipe.page} includes {have}; it must include every section once, in order: {want}")
    return problems


def write_recipe(recipe: Recipe, output: str) -> None:
    secs = sections(output, recipe.script)
    recipe.folder.mkdir(parents=True, exist_ok=True)
    for p in recipe.folder.glob("*.txt"):
        if p.stem not in secs:
            p.unlink()
    for name, text in secs.items():
        (recipe.folder / f"{name}.txt").write_text(text, encoding="utf-8")


# -- the conformance matrix -------------------------------------------------------------------------
def conformance_markdown() -> str:
    """``refopt verify --markdown --dtype all`` (every scenario, every installed framework)."""
    with tempfile.TemporaryDirectory(prefix="refopt-verify-") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "refopt.cli", "verify", "--markdown", "--dtype", "all", "--quiet", "--out", out],
            capture_output=True,
            text=True,
            cwd=out,
        )
    if proc.returncode != 0:
        raise RuntimeError(
            f"refopt verify exited with {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc.stdout


def frameworks_missing() -> list[str]:
    from refopt.oracle.adapters import FRAMEWORKS, available

    return [f for f in FRAMEWORKS if not available(f)]


# -- command line -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command")
    rb = sub.add_parser("run-blocks", help="run a page's Python blocks in order, in one namespace")
    rb.add_argument("page")
    p.add_argument("--check", action="store_true", help="compare with docs/generated/ instead of writing")
    p.add_argument("--only", choices=["recipes", "conformance"])
    args = p.parse_args(argv)
    if args.command == "run-blocks":
        return run_blocks(Path(args.page))

    problems: list[str] = []
    if args.only in (None, "recipes"):
        for recipe in RECIPES:
            output = run_script(recipe.script)
            if args.check:
                problems += recipe_problems(recipe, output)
            else:
                write_recipe(recipe, output)
                problems += [q for q in recipe_problems(recipe, output) if recipe.page in q]
                print(f"wrote {recipe.folder.relative_to(ROOT)}/ ({len(sections(output))} sections)")
    if args.only in (None, "conformance"):
        missing = frameworks_missing()
        if missing:
            print(f"the conformance matrix needs every framework; not installed: {missing}", file=sys.stderr)
            return 2
        text = conformance_markdown()
        if args.check:
            if not CONFORMANCE.exists() or CONFORMANCE.read_text(encoding="utf-8") != text:
                problems.append(f"{CONFORMANCE.relative_to(ROOT)} differs from `refopt verify --markdown --dtype all`")
        else:
            GENERATED.mkdir(parents=True, exist_ok=True)
            CONFORMANCE.write_text(text, encoding="utf-8")
            print(f"wrote {CONFORMANCE.relative_to(ROOT)}")
    for q in problems:
        print(q, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
