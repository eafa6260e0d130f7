"""A tool's guarantee: what running it again for one logical call does.

A crash between running a tool and recording its result leaves the call's outcome
unknown; what the tools service may do about it is each tool's declaration, never an
accident of where the crash landed:

- ``idempotent``: running it again is harmless: it only reads (a calculator, a lookup),
  or its effect is the same however often it runs (set a value, not add to it);
- ``keyed``: it receives an idempotency key (:attr:`ToolContext.idempotency_key
  <pipeline.tool_context.ToolContext.idempotency_key>`), and running it again with
  the same key is harmless, because the tool or the system it calls deduplicates by the
  key (a payment API's ``Idempotency-Key``);
- ``at_most_once``: it must never run twice for one logical call: a call whose outcome
  is unknown after a crash is reported as "outcome unknown" instead of run again.

Built-in tools declare theirs; any other tool (built in code, from a plugin, an HTTP
tool) is ``keyed`` unless it says otherwise, and an MCP tool follows its server's
annotations (see :mod:`pipeline.toolbox.mcp`).
"""

from __future__ import annotations

from typing import Final, get_args

from pipeline.config.sections import ToolGuarantee
from pipeline.errors import ConfigError

Guarantee = ToolGuarantee
"""``"idempotent"``, ``"keyed"`` or ``"at_most_once"`` (the settings use the same type)."""

IDEMPOTENT: Final = "idempotent"
KEYED: Final = "keyed"
AT_MOST_ONCE: Final = "at_most_once"

GUARANTEES: tuple[Guarantee, ...] = get_args(ToolGuarantee)
"""Every guarantee, from the most to the least forgiving of a repeat."""


def checked_guarantee(tool: str, value: object) -> Guarantee:
    """``value`` when it is a guarantee, else a ConfigError naming the tool and the choices."""
    for guarantee in GUARANTEES:
        if value == guarantee:
            return guarantee
    raise ConfigError(
        f"the guarantee of tool {tool!r} is {value!r}; use one of {', '.join(GUARANTEES)}"
    )
