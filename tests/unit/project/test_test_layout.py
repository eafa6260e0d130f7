"""The test tree itself.

Every folder is a package, so pytest (in its default ``prepend`` import mode) imports each
test module by its full dotted name and two test files of one name in different folders
both run.

``tests/unit`` mirrors the package: the test of ``pipeline/runtime/lanes.py`` is
``tests/unit/runtime/test_lanes.py``; of a package's ``__init__.py``, such as
``pipeline/cli/__init__.py``, the parent folder's ``test_cli.py``. A name may add an aspect
after the module's (``test_serde_evolution.py`` for ``serde.py``). Tests of files outside
the package (the README, ``examples/``, ``schemas/``, ``.ci/``, this tree) are in
``tests/unit/project/``.
"""

from __future__ import annotations

from pathlib import Path

from tests.paths import PACKAGE, TESTS

UNIT = TESTS / "unit"
OUTSIDE_THE_PACKAGE = UNIT / "project"
# Tests of the package as a whole, named after no single module of it.
WHOLE_PACKAGE = {
    "test_exported_members.py": "the public API: pipeline/__init__.py and the error tree",
    "test_layers.py": "which layer of the package may import which",
}


def python_folders() -> set[Path]:
    return {path.parent for path in TESTS.rglob("*.py") if "__pycache__" not in path.parts}


def module_names(package: Path) -> set[str]:
    """The modules and sub-packages of ``package``: what a test beside them is named after."""
    modules = {path.stem for path in package.glob("*.py") if path.name != "__init__.py"}
    packages = {path.name for path in package.iterdir() if (path / "__init__.py").is_file()}
    return modules | packages


def misplaced(test: Path) -> str | None:
    """Why the unit test file at ``test`` would be in the wrong place, or None when it is not."""
    if test.is_relative_to(OUTSIDE_THE_PACKAGE):
        return None
    folder = test.parent.relative_to(UNIT)
    if folder == Path() and test.name in WHOLE_PACKAGE:
        return None
    package = PACKAGE / folder
    where = f"pipeline/{folder.as_posix()}/" if folder != Path() else "pipeline/"
    if not (package / "__init__.py").is_file():
        return f"{where} is not a package: the folder must mirror the tested module's"
    stem = test.stem.removeprefix("test_")
    if not any(stem == name or stem.startswith(f"{name}_") for name in module_names(package)):
        return (
            f"no module of {where} is named {stem}: name the file test_<module>.py, or "
            "test_<module>_<aspect>.py, in the folder mirroring the module it tests"
        )
    return None


def test_every_folder_with_python_files_is_a_package() -> None:
    missing = [
        folder.relative_to(TESTS.parent).as_posix()
        for folder in sorted(python_folders())
        if not (folder / "__init__.py").is_file()
    ]
    assert missing == [], "add an empty __init__.py to each"


def test_every_package_up_to_the_tests_folder_is_one() -> None:
    # A folder without __init__.py between a test and tests/ would make pytest import the
    # test under a shorter name, where two files of one name collide again.
    for folder in python_folders():
        for parent in [folder, *folder.parents]:
            if parent == TESTS.parent:
                break
            assert (parent / "__init__.py").is_file(), parent


def test_unit_tests_mirror_the_package() -> None:
    wrong = {
        test.relative_to(TESTS.parent).as_posix(): why
        for test in sorted(UNIT.rglob("test_*.py"))
        if (why := misplaced(test)) is not None
    }
    assert wrong == {}


def test_every_unit_folder_mirrors_a_package_of_pipeline() -> None:
    folders = [
        folder.relative_to(UNIT)
        for folder in python_folders()
        if folder.is_relative_to(UNIT) and not folder.is_relative_to(OUTSIDE_THE_PACKAGE)
    ]
    assert [f for f in folders if not (PACKAGE / f / "__init__.py").is_file()] == []


def test_a_test_file_in_the_wrong_place_is_refused() -> None:
    assert misplaced(UNIT / "runtime" / "test_lanes.py") is None
    assert misplaced(UNIT / "runtime" / "test_lanes_backpressure.py") is None
    assert misplaced(UNIT / "test_cli_produce.py") is None  # pipeline/cli/__init__.py
    assert misplaced(UNIT / "project" / "test_readme_links.py") is None

    assert "pipeline/runtime/" in str(misplaced(UNIT / "runtime" / "test_lane.py"))
    assert "no module of pipeline/ is named lanes" in str(misplaced(UNIT / "test_lanes.py"))
    assert "no module of pipeline/services/" in str(misplaced(UNIT / "services" / "test_lanes.py"))
    assert "pipeline/lanes/ is not a package" in str(misplaced(UNIT / "lanes" / "test_lanes.py"))
