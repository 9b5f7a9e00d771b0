"""Each recipe's script runs, and its page shows exactly what it prints: every section
of the output, once, in order, through a generated include equal to that section
(`python tools/make_docs.py --only recipes` regenerates them)."""

from __future__ import annotations

import pytest

from tests.docs.support import make_docs

RECIPES = make_docs.RECIPES


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_the_page_shows_what_the_script_prints(recipe) -> None:
    output = make_docs.run_script(recipe.script)
    problems = make_docs.recipe_problems(recipe, output)
    assert not problems, "\n".join(problems) + "\n(regenerate: python tools/make_docs.py --only recipes)"


def test_a_changed_figure_or_section_is_caught() -> None:
    """Without running the script: its output, as the page shows it, passes; one changed
    word, or one more section, does not."""
    recipe = RECIPES[0]
    printed = "".join((make_docs.ROOT / p).read_text(encoding="utf-8") for p in make_docs.included(recipe))
    assert make_docs.recipe_problems(recipe, printed) == []
    changed = printed.replace("True", "False", 1)
    assert any("differs" in p for p in make_docs.recipe_problems(recipe, changed))
    extra = printed + "[extra] a section the page does not include\n"
    problems = make_docs.recipe_problems(recipe, extra)
    assert any("extra.txt is missing" in p for p in problems) and any("in order" in p for p in problems)


def test_sections_cut_at_the_header_lines() -> None:
    out = make_docs.sections("[one] first\na\n[two-2] second\nb\nc\n")
    assert out == {"one": "[one] first\na\n", "two-2": "[two-2] second\nb\nc\n"}
    with pytest.raises(ValueError, match="before the first"):
        make_docs.sections("stray\n[one] x\n")
    with pytest.raises(ValueError, match="printed twice"):
        make_docs.sections("[one] x\n[one] y\n")
