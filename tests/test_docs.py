"""The README is a front door to the documentation site (docs/, built by .ci/run with
`mkdocs build --strict`, which checks the site's own links and references)."""

from __future__ import annotations

import re

from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def test_the_readme_is_short_and_starts_with_the_two_commands():
    assert len(README.splitlines()) < 150
    commands = [line for line in README.splitlines() if line.startswith(("pip ", "rsb-tune "))]
    assert commands[:2] == ["pip install . && rsb-tune seeds --n 100 --recipe A2", "pip install -e '.[test]' && python -m pytest"]


def test_every_local_link_and_image_of_the_readme_exists_and_the_figure_is_small():
    targets = [t for t in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README) if "://" not in t]
    assert "docs/img/seed_histogram.png" in targets and "docs/getting-started.md" in targets
    for target in targets:
        assert (REPO / target).exists(), target
    assert (REPO / "docs/img/seed_histogram.png").stat().st_size < 100_000

