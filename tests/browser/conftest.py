"""Browser tests run the real services: they share the integration tests' helpers
(running services, the gateway under uvicorn), which live next to those tests."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
