"""``pipeline run module:attr`` imports from the current folder, as uvicorn does.

Run in a subprocess from a temporary folder, with no PYTHONPATH: the module exists only
there. Its ``service`` is a Runnable that reports where it was imported from and stops.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.environment import environment_without_settings

PIPELINE = Path(sys.executable).parent / "pipeline"

MY_SERVICE = """
from pathlib import Path


class Once:
    name = "once"

    def run_forever(self) -> int:
        print("ran from", Path(__file__).resolve().parent)
        return 0


service = Once()
"""


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = environment_without_settings(drop=["PYTHONPATH"])
    return subprocess.run(
        [str(PIPELINE), "run", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_run_imports_a_module_from_the_current_folder(tmp_path: Path) -> None:
    (tmp_path / "my_service.py").write_text(MY_SERVICE)
    result = run("my_service:service", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ran from {tmp_path.resolve()}"


def test_app_dir_names_another_folder(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "my_service.py").write_text(MY_SERVICE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    missing = run("my_service:service", cwd=elsewhere)
    assert missing.returncode == 1
    assert "cannot import 'my_service'" in missing.stderr
    assert "No module named 'my_service'" in missing.stderr
    found = run("--app-dir", str(app), "my_service:service", cwd=elsewhere)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == f"ran from {app.resolve()}"
