"""The operator console: a web page for operators, live from Kafka, behind a sign-in.

``pipeline run console`` calls :func:`build`; tests and embedders use :func:`create_app`.
"""

from pipeline.services.console.app import create_app
from pipeline.services.console.server import ConsoleServer, build

__all__ = ["ConsoleServer", "build", "create_app"]
