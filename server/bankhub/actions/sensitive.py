"""One refusal for free text the hub keeps in the audit log, a manifest or a list: it must not
carry a value the DLP detector finds (a card, resident ID or account number, a CVV or a code).

The audit chain is append-only and exports copy it, so a card number typed into a case
reference, a hold's name, a release or erasure reason or a reviewer's note would be kept
for ever, unmasked, outside the DLP fingerprints. Every action that keeps such text checks
it here, once, before anything is written: ``422 sensitive_data`` naming the field, never
echoing the value (the refusal itself may be logged or shown). An investigator finds where a
value appeared with ``POST /v1/compliance/dlp/search``, which keeps no copy of it.
"""

from __future__ import annotations

from ..compliance import dlp as core
from .errors import ActionError

__all__ = ["refuse_sensitive"]


def refuse_sensitive(code: str = "sensitive_data", **fields: str | None) -> None:
    """Raise :class:`ActionError` (``code``, 422) for the first of ``fields`` (name → text; None
    is no text) that carries a value the DLP detector finds; the message names the field only."""
    for name, value in fields.items():
        if value and core.scan(value):
            raise ActionError(
                code,
                f"{name} must not carry a card, resident ID or account number, a CVV or a code "
                "(it is kept in the audit log): find where one appeared with POST /v1/compliance/dlp/search",
            )
