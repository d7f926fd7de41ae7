"""``hub audit verify``, under the names the rest of the hub imports; the code
lives with the audit trail it checks, in ``services.views.groups.audit``."""

from __future__ import annotations

from services.views.groups.audit import Verification, verify_chain

__all__ = ["Verification", "verify_chain"]
