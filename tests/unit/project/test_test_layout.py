"""The test tree itself: every folder of it is a package, so pytest (in its default
``prepend`` import mode) imports each test module by its full dotted name and two test
files of one name in different folders both run."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def python_folders() -> set[Path]:
    return {path.parent for path in TESTS.rglob("*.py") if "__pycache__" not in path.parts}


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
