"""The participant's access report (Art. 15 GDPR) as one plain dict.

Built from the case's own record only — its stored events and its recorded reads
(``services.replay.replay_case``) — so the report says what the hub holds, not
what a view currently shows: every personal field of every event with its
category and source, every handover (a disclosure to another agency) with the
basis it relied on and its state, every recorded read, every consent with its
history. Decryption is passed in (``reveal``); once the participant's key is
destroyed every personal value reads ``[gelöscht]``.

Machine values keep the contract's codes and ISO 8601 times; each code has its
German word beside it (``*_label``). ``services.subject_report.html`` prints it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from projections.case_doc import ERASED, Doc, reduce_case
from projections.caseload import involved_agencies
from projections.disclosure import field_item
from projections.events import CASE_READ
from services.messages.envelope import event_type
from services.messages.privacy import PERSONAL_PATHS
from services.replay import as_record
from services.subject_report import labels as de

# Per domain event type, each personal payload path and the category it is marked with.
_MARKED: dict[str, dict[str, str]] = {
    event_type(t): {path: c.value for path, c in paths.items()}
    for t, paths in PERSONAL_PATHS.items()
    if paths
}
_CATEGORY_ORDER = list(de.CATEGORIES)
_STATE_EVENTS = {
    "HandoverAccepted": "accepted",
    "HandoverDeclined": "declined",
    "HandoverWithdrawn": "withdrawn",
    "HandoverCompleted": "completed",
    "RehabDecided": "completed",
}
# States after which the recipient no longer sees what only this handover carried
# (``projections.disclosure.CARRYING_STATES``).
_ACCESS_ENDED = frozenset({"declined", "withdrawn", "forwarded"})
STATUTORY = "statutory_task"


def build_report(
    case_id: str,
    events: list[Doc],
    reads: list[Doc],
    *,
    agencies: dict[str, str],
    produced_at: datetime,
    produced_by: Doc,
    reveal: Callable[[Any], Any] = lambda value: value,
) -> Doc:
    """The report of ``case_id`` from its replayed ``events`` and the ``reads`` of its
    read stream. ``agencies``: display names by agency id."""
    doc, data, leads = _fold(case_id, events)
    erased = doc["erased_at"] is not None
    data = _readable(reveal(data), erased)
    shown = sorted(
        {item["category"] for item in data if not _all_erased(item["value"])},
        key=_category_rank,
    )
    read_items = read_entries(events, reads)
    consents = _consents(events, produced_at)
    named = set(involved_agencies(doc)) | {doc["opened_by"]}
    named |= {r["agency"] for r in read_items} | {i["source"] for i in data}
    for consent in consents:
        named |= {consent["source_agency"], *consent["recipients"]}
    return {
        "title": "Auskunft nach Art. 15 DSGVO",
        "case": _case(doc, leads),
        "produced_at": produced_at.isoformat(),
        "produced_by": {
            **produced_by,
            "role_label": de.label(de.ROLES, produced_by.get("role")),
        },
        "agencies": [
            {"agency_id": a, "name": agencies.get(a, "Prüfung" if a == "auditor" else a)}
            for a in sorted(named)
        ],
        "categories_shown": shown,
        "data": _grouped(data),
        "disclosures": _disclosures(events, doc),
        "reads": read_items,
        "consents": consents,
        "appointments": [
            {
                "kind": a["kind"],
                "kind_label": de.label(de.APPOINTMENT_KINDS, a["kind"]),
                "at": a["at"],
                "state": a["state"],
                "state_label": de.label(de.APPOINTMENT_STATES, a["state"]),
                "agency": a["agency"],
            }
            for a in doc["appointments"].values()
        ],
    }


def _fold(case_id: str, events: list[Doc]) -> tuple[Doc, list[Doc], list[Doc]]:
    """The case through every event, the personal items the events hold (still
    sealed) with the category and source each has where it was recorded, and the
    case's leads over time."""
    doc: Doc | None = None
    items: list[Doc] = []
    leads: list[Doc] = []
    for event in events:
        doc = reduce_case(doc, as_record(case_id, event), in_place=True)
        if not leads or leads[-1]["agency"] != doc["lead_agency"]:
            leads.append({"agency": doc["lead_agency"], "since": event["occurred_at"]})
        marked = _MARKED.get(event["type"], {})
        for path in sorted(marked):
            value = _value_at(event["payload"], path)
            if value is None or value == []:
                continue
            item = field_item(doc, event["type"], event["agency"], path, event["payload"])
            category, source = item or (marked[path], event["agency"])
            items.append(
                {
                    "category": category,
                    "source": source,
                    "field": path,
                    "label": de.field_label(event["type"], path),
                    "value": value,
                    "event": event["type"],
                    "recorded_by": event["agency"],  # the source, or who wrote it down
                    "position": event["position"],
                    "occurred_at": event["occurred_at"],
                    "recorded_at": event["recorded_at"],
                }
            )
    if doc is None:
        raise ValueError(f"case {case_id} has no events")
    return doc, items, leads


def _value_at(payload: Doc, path: str) -> Any:
    value: Any = payload
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _readable(items: list[Doc], erased: bool) -> list[Doc]:
    """Revealed items; after erasure every value is ``[gelöscht]`` (also a plaintext
    an old event may hold: the participant's data is gone, whatever the bytes say)."""

    def blank(value: Any) -> Any:
        if isinstance(value, list):
            return [blank(v) for v in value]
        return de.ERASED_TEXT if erased or value == ERASED else value

    return [{**item, "value": blank(item["value"])} for item in items]


def _all_erased(value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    return all(v == de.ERASED_TEXT for v in values)


def _category_rank(category: str) -> tuple[int, str]:
    rank = _CATEGORY_ORDER.index(category) if category in _CATEGORY_ORDER else len(_CATEGORY_ORDER)
    return rank, category


def _grouped(items: list[Doc]) -> list[Doc]:
    """The items per category and source, categories in the report's order."""
    groups: dict[tuple[str, str], list[Doc]] = {}
    for item in items:
        groups.setdefault((item["category"], item["source"]), []).append(item)
    return [
        {
            "category": category,
            "category_label": de.label(de.CATEGORIES, category),
            "source": source,
            "items": [
                {k: v for k, v in item.items() if k not in ("category", "source")}
                for item in groups[(category, source)]
            ],
        }
        for category, source in sorted(groups, key=lambda k: (_category_rank(k[0]), k[1]))
    ]


def _case(doc: Doc, leads: list[Doc]) -> Doc:
    return {
        "case_id": doc["case_id"],
        "pseudonym": doc["participant"]["pseudonym"],
        "programme": doc["programme"],
        "site": doc["site"],
        "stage": doc["stage"],
        "stage_label": de.label(de.STAGES, doc["stage"]),
        "outcome": doc["outcome"],
        "outcome_label": de.label(de.OUTCOMES, doc["outcome"]),
        "lead_agency": doc["lead_agency"],
        "opened_by": doc["opened_by"],
        "opened_at": doc["opened_at"],
        "closed_at": doc["closed_at"],
        "erased": doc["erased_at"] is not None,
        "erased_at": doc["erased_at"],
        "leads": leads,
    }


def _categories(codes: Iterable[str]) -> Doc:
    ordered = sorted(codes, key=_category_rank)
    return {
        "categories": ordered,
        "category_labels": [de.label(de.CATEGORIES, c) for c in ordered],
    }


def _basis(ids: list[str]) -> list[Doc]:
    return [
        {"kind": STATUTORY, "label": de.STATUTORY_TASK}
        if basis == STATUTORY
        else {"kind": "consent", "consent_id": basis, "label": f"Einwilligung {basis}"}
        for basis in ids
    ]


def _step(state: str, event: Doc, **extra: Any) -> Doc:
    return {
        "state": state,
        "state_label": de.label(de.HANDOVER_STATES, state),
        "at": event["occurred_at"],
        "recorded_at": event["recorded_at"],
        "agency": event["agency"],
        "actor": event["actor"],
        **extra,
    }


def _disclosures(events: list[Doc], doc: Doc) -> list[Doc]:
    """Every handover, in the order offered: to whom, which categories, when (the
    agency's clock and the hub's, which decides), on which basis, and what became
    of it. A forward is a disclosure by the forwarding agency to the next one."""
    found: dict[str, Doc] = {}

    def offered(event: Doc, handover_id: str, to: str, categories: list[str], kind: str) -> Doc:
        payload = event["payload"]
        basis = list(payload.get("legal_basis") or [])
        return {
            "handover_id": handover_id,
            "kind": kind,
            "kind_label": de.label(de.HANDOVER_KINDS, kind),
            "from_agency": event["agency"],
            "to_agency": to,
            **_categories(categories),
            "offered_at": event["occurred_at"],
            "recorded_at": event["recorded_at"],
            "legal_basis": _basis(basis),
            "consent_ids": [b for b in basis if b != STATUTORY],
            "forwarded_from": None,
            "forwarded_to": None,
            "decision": None,
            "history": [_step("offered", event)],
        }

    for event in events:
        payload, kind = event["payload"], event["type"]
        if kind == "HandoverOffered":
            found[payload["handover_id"]] = offered(
                event,
                payload["handover_id"],
                payload["to_agency"],
                payload["data_categories"],
                payload["kind"],
            )
        elif kind == "HandoverForwarded" and payload["handover_id"] in found:
            previous = found[payload["handover_id"]]
            previous["forwarded_to"] = payload["new_handover_id"]
            previous["history"].append(_step("forwarded", event, to=payload["to_agency"]))
            forwarded = offered(
                event,
                payload["new_handover_id"],
                payload["to_agency"],
                previous["categories"],
                previous["kind"],
            )
            forwarded["forwarded_from"] = payload["handover_id"]
            found[payload["new_handover_id"]] = forwarded
        elif kind in _STATE_EVENTS and payload.get("handover_id") in found:
            handover = found[payload["handover_id"]]
            extra: Doc = {}
            if kind == "RehabDecided":
                extra = {
                    "decision": payload["outcome"],
                    "decision_label": de.label(de.REHAB_OUTCOMES, payload["outcome"]),
                }
                handover["decision"] = payload["outcome"]
            handover["history"].append(_step(_STATE_EVENTS[kind], event, **extra))
    result = []
    for handover_id, handover in found.items():
        # The state as the case holds it (the same reducer as every view).
        state = doc["handovers"].get(handover_id, {}).get("state", handover["history"][-1]["state"])
        result.append(
            {
                **handover,
                "state": state,
                "state_label": de.label(de.HANDOVER_STATES, state),
                "access_ended": state in _ACCESS_ENDED,
            }
        )
    return result


def read_entries(events: list[Doc], reads: list[Doc]) -> list[Doc]:
    """Every recorded read of the case, in the global order: the read stream's, and
    those older versions recorded inside the case (``CaseRead`` events)."""
    items = []
    for read, stored in [(e, "case") for e in events if e["type"] == CASE_READ] + [
        (r, "reads") for r in reads
    ]:
        payload = read["payload"]
        role, scope = payload.get("role"), payload.get("scope")
        items.append(
            {
                "position": read["position"],
                "at": read["recorded_at"],
                "agency": read["agency"],
                "actor": read["actor"],
                "user": payload.get("user"),
                "role": role,
                "role_label": de.label(de.ROLES, role),
                "scope": scope,
                "scope_label": de.label(de.SCOPES, scope),
                "target": payload.get("target"),
                **_categories(payload.get("categories") or []),
                "stored": stored,
            }
        )
    return sorted(items, key=lambda item: item["position"])


def _consents(events: list[Doc], now: datetime) -> list[Doc]:
    """Every consent as granted, with its history (granted, revoked: when, by whom)
    and its status at ``now``."""
    found: dict[str, Doc] = {}
    for event in events:
        payload = event["payload"]
        if event["type"] == "ConsentGranted":
            found[payload["consent_id"]] = {
                "consent_id": payload["consent_id"],
                **_categories(payload["categories"]),
                "source_agency": payload["source_agency"],
                "recipients": list(payload["recipients"]),
                "purpose": payload.get("purpose"),
                "document_ref": payload.get("document_ref"),
                "valid_from": payload["valid_from"],
                "valid_until": payload.get("valid_until"),
                "granted_at": event["occurred_at"],
                "granted_by": event["agency"],
                "revoked_at": None,
                "revoked_by": None,
                "history": [_consent_step("granted", event)],
            }
        elif event["type"] == "ConsentRevoked" and payload["consent_id"] in found:
            consent = found[payload["consent_id"]]
            consent["revoked_at"] = event["occurred_at"]
            consent["revoked_by"] = event["agency"]
            consent["history"].append(_consent_step("revoked", event))
    for consent in found.values():
        status = _status(consent, now)
        consent.update(status=status, status_label=de.label(de.CONSENT_STATUS, status))
    return list(found.values())


def _consent_step(what: str, event: Doc) -> Doc:
    return {
        "event": what,
        "label": de.label(de.CONSENT_EVENTS, what),
        "at": event["occurred_at"],
        "recorded_at": event["recorded_at"],
        "agency": event["agency"],
        "actor": event["actor"],
    }


def _status(consent: Doc, now: datetime) -> str:
    if consent["revoked_at"] is not None:
        return "revoked"
    until = consent["valid_until"]
    if until is not None and datetime.fromisoformat(until) <= now:
        return "expired"
    if datetime.fromisoformat(consent["valid_from"]) > now:
        return "not_yet_valid"
    return "valid"
