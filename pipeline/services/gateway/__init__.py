"""The gateway: inbound channels and webhooks over HTTP, stored in Kafka before 202.

``pipeline run gateway`` calls :func:`build`; tests and embedders use :func:`create_app`.
"""

from pipeline.services.gateway.app import create_app
from pipeline.services.gateway.server import GatewayServer, build

__all__ = ["GatewayServer", "build", "create_app"]
