"""Disclosure: may agency A see an item of personal data (category, source) at a moment?

The one rule every read path applies (case view, history), DOMAIN rule 3 and
"Consent"/"Views": data reaches another agency only by a handover that carried
its category to that agency under a basis valid at that moment, or by a
statutory basis declared in policy. A consent alone grants nothing; it is the
basis a handover needs, and its revocation ends what only it allowed.

Pure: a case document (``projections.case_doc`` shape) in, a yes or no out.
"""

from __future__ import annotations

from datetime import datetime

from domain.case.consent import consent_valid
from projections.case_doc import PARTICIPANT_CATEGORIES as _PARTICIPANT_FIELDS
from projections.case_doc import Doc, chain_origin

# Statutory basis of the case's current lead (policy): §§ 67 ff. SGB X, the social
# data the lead needs for its own task (§ 69 Abs. 1 Nr. 1 SGB X): who the participant
# is and how to reach them, the integration plan it is responsible for, the
# participant's employment. Health is not part of it (Art. 9 GDPR, § 203 StGB): the
# lead sees health data only when a handover to it carried them.
STATUTORY_LEAD: frozenset[str] = frozenset({"identity", "contact", "plan", "employment_history"})
# The participant's identity and contact fields: the opener collected them, the lead
# holds them by its task and hands them on.
PARTICIPANT_CATEGORIES: frozenset[str] = frozenset({"identity", "contact"})
# Handover states in which the recipient may see what the handover carried: an open
# offer shows the recipient what it is asked to take over (the consent covers that
# disclosure); a declined, withdrawn or forwarded handover ends access to what only
# it carried. The participant's identity and contact reach the recipient only once
# it took the case on.
CARRYING_STATES: frozenset[str] = frozenset({"offered", "accepted", "completed"})
PARTICIPANT_STATES: frozenset[str] = frozenset({"accepted", "completed"})


def may_see(doc: Doc, agency: str, category: str, source: str | None, at: datetime) -> bool:
    """Whether ``agency`` may see an item of ``category`` whose source is ``source`` at ``at``.

    1. ``agency`` is the item's source;
    2. ``agency`` is the case's current lead and ``category`` is statutory for it;
    3. a handover to ``agency`` carried ``category`` from that source (see
       ``_carried``) under a consent valid at ``at``.
    An item without a known source is withheld from everyone but by rule 2.
    """
    if source is not None and agency == source:
        return True
    if agency == doc["lead_agency"] and category in STATUTORY_LEAD:
        return True
    if source is None:
        return False
    return any(
        _carried(doc, handover, agency, category, source, at)
        for handover in doc["handovers"].values()
    )


def _carried(doc: Doc, h: Doc, agency: str, category: str, source: str, at: datetime) -> bool:
    if h["to_agency"] != agency or category not in h["data_categories"]:
        return False
    states = PARTICIPANT_STATES if category in PARTICIPANT_CATEGORIES else CARRYING_STATES
    if h["state"] not in states:
        return False
    sender = h["from_agency"]
    issuers = {sender, chain_origin(doc, h)}
    # From the source itself (or the chain's origin, for a forwarded handover); the
    # participant's identity and contact also from the opener or the current lead.
    from_source = source in issuers or (
        category in PARTICIPANT_CATEGORIES and sender in (doc["opened_by"], doc["lead_agency"])
    )
    if not from_source:
        return False
    return any(
        category in c["categories"]
        and c["source_agency"] in issuers
        and agency in c["recipients"]
        and consent_valid(
            datetime.fromisoformat(c["valid_from"]),
            _moment(c["valid_until"]),
            _moment(c["revoked_at"]),
            at,
        )
        for c in doc["consents"].values()
    )


def _moment(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


# Payload fields of the history whose author is their source, by event type: the
# category each holds. Handover reasons are the sender's (or decider's) notes.
_AUTHORED: dict[str, dict[str, str]] = {
    "HandoverOffered": {"reason": "notes"},
    "HandoverDeclined": {"reason": "notes"},
    "HandoverForwarded": {"reason": "notes"},
    "HandoverWithdrawn": {"reason": "notes"},
    "AssignmentExtended": {"reason": "notes"},
    "RehabDecided": {"reason": "notes"},
    "LeadTransferred": {"reason": "notes"},
    "PlanAgreed": {"goals": "plan", "modules": "plan"},
    "PlanUpdated": {"goals": "plan", "modules": "plan"},
    "EmploymentStarted": {"employer": "employment_history"},
}


def field_item(
    folded: Doc, event_type: str, event_agency: str, path: str, payload: Doc
) -> tuple[str, str] | None:
    """The (category, source) of a personal payload field of an event, decided as the
    case view decides the item it became; ``folded`` is the case folded through that
    event. None when unknown: the caller withholds the field."""
    if event_type == "CaseOpened" and path.startswith("participant."):
        key = path.split(".", 1)[1]
        return _PARTICIPANT_FIELDS.get(key, "identity"), str(folded["opened_by"])
    if event_type == "NoteAdded" and path == "text":
        notes = folded["notes"]
        if not notes or notes[-1].get("source") is None:
            return None
        return str(notes[-1]["category"]), str(notes[-1]["source"])
    if event_type in ("MeasureStarted", "MeasureEnded") and path in ("title", "result"):
        measure = folded["measures"].get(payload.get("measure_id") or "")
        return None if measure is None else ("plan", str(measure["agency"]))
    category = _AUTHORED.get(event_type, {}).get(path)
    return None if category is None else (category, event_agency)


def withheld(
    doc: Doc,
    folded: Doc,
    agency: str,
    event_type: str,
    event_agency: str,
    payload: Doc,
    paths: frozenset[str],
    at: datetime,
    shown: set[str] | None = None,
) -> Doc:
    """``payload`` without the personal fields (``paths``, dotted) ``agency`` may not
    see at ``at`` in the case ``doc`` (its current state). The categories of the
    fields kept are added to ``shown`` (the read is recorded with them)."""
    result = dict(payload)
    for path in sorted(paths):
        item = field_item(folded, event_type, event_agency, path, payload)
        if item is not None and may_see(doc, agency, item[0], item[1], at):
            if shown is not None and _present(payload, path.split(".")):
                shown.add(item[0])
            continue
        _drop(result, path.split("."))
    return result


def _present(container: Doc, keys: list[str]) -> bool:
    head, *rest = keys
    value = container.get(head)
    if not rest or value is None:
        return value is not None and value not in ([], "")
    return isinstance(value, dict) and _present(value, rest)


def _drop(container: Doc, keys: list[str]) -> None:
    """Removes the dotted path ``keys`` from ``container``, copying each dict on the
    way (the caller's payload stays as it was)."""
    head, *rest = keys
    if not rest:
        container.pop(head, None)
        return
    inner = container.get(head)
    if isinstance(inner, dict):
        container[head] = inner = dict(inner)
        _drop(inner, rest)
