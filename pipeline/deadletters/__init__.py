"""Dead letters an operator can list, show and redrive: the library behind ``pipeline dlq``
and the console's dead-letter page.

:class:`DeadLetterStore` reads the dead-letter topic and redrives a letter once (the
guarantees are in :mod:`pipeline.deadletters.store`); :class:`DeadLetterEntry` is a
decoded dead letter and :class:`Redrive` the record of a redrive.
"""

from __future__ import annotations

from pipeline.deadletters.entry import DeadLetterEntry, Redrive, parse_letter_id
from pipeline.deadletters.store import REDRIVES_TOPIC, DeadLetterStore

__all__ = ["REDRIVES_TOPIC", "DeadLetterEntry", "DeadLetterStore", "Redrive", "parse_letter_id"]
