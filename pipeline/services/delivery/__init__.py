"""The delivery service: sends responses to their channels, retries, never sends twice.

``pipeline run delivery`` runs :func:`build`. Outbound adapters live with their channels
(``pipeline.channels.<channel>.outbound``) and return the outcomes of
:mod:`pipeline.channels.outbound`.
"""

from pipeline.services.delivery.senders import default_senders
from pipeline.services.delivery.service import build

__all__ = ["build", "default_senders"]
