"""The documentation site builds with MkDocs in strict mode, offline, and documents the
public API."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pipeline
from tests.paths import REPO


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for the module; any warning (a broken link, a page missing
    from the navigation, an API name that does not resolve) fails the build."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # the theme's notice about MkDocs 2
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", "mkdocs.yml", "-d", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    return out


def test_every_page_is_built(site: Path) -> None:
    for page in sorted((REPO / "docs").rglob("*.md")):
        relative = page.relative_to(REPO / "docs").with_suffix("")
        folder = relative.parent if relative.name == "index" else relative
        assert (site / folder / "index.html").is_file(), f"{page} was not built"


def test_the_site_loads_nothing_from_elsewhere(site: Path) -> None:
    """No web fonts, scripts, stylesheets or images from another host: the site is read
    offline as it is built."""
    external = re.compile(r"""(?:src|href)=["']?(?:https?:)?//""")
    found = []
    for page in site.rglob("*.html"):
        for tag in re.findall(r"<(?:script|link|img|iframe|source)\b[^>]*>", page.read_text()):
            if external.search(tag):
                found.append(f"{page.relative_to(site)}: {tag}")
    for sheet in site.rglob("*.css"):
        found += [
            f"{sheet.relative_to(site)}: {url}"
            for url in re.findall(
                r"""(?:url\(|@import\s+)["']?(?:https?:)?//[^)"';]+""", sheet.read_text()
            )
        ]
    assert found == []


def test_the_api_reference_documents_the_public_api(site: Path) -> None:
    page = (site / "reference" / "api" / "index.html").read_text()
    anchors = set(re.findall(r'id="(pipeline\.[\w.]+)"', page))
    names = {anchor.rsplit(".", 1)[-1] for anchor in anchors}
    missing = [name for name in pipeline.__all__ if name != "__version__" and name not in names]
    assert missing == []
    assert "pipeline.testing.TestService" in anchors
