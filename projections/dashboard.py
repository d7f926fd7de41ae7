"""Dashboard figures per programme, site and agency (DOMAIN.md, "Views").

``dashboard_delta(state, before, after)`` folds one case change into running
totals; it is pure in that it only touches ``state``, a plain dict owned by the
caller (the in-process runner stores it as JSON; the faust worker keeps it in a
table). ``dashboard_figures`` turns totals plus the open offers into the
figures, at a reading moment and against a capacity plan.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from projections.case_doc import Doc

SEP = "|"
OCCUPYING = ("active", "employed", "aftercare")
OVERDUE_KEYS = (
    "handover_id",
    "case_id",
    "agency",
    "from_agency",
    "kind",
    "programme",
    "site",
    "due_at",
)


def empty_state() -> dict[str, Any]:
    return {
        "cases_by_stage": {},
        "handovers_by_state": {},
        "offer_to_accept_hours": {},
        "assignment_to_employment_days": {},
        "assigned": {},
        "employed_within_12_months": {},
        "places_used": {},
        "rehab_decisions": {},
    }


def _bump(counter: dict[str, int], key: str, by: int) -> None:
    value = counter.get(key, 0) + by
    if value:
        counter[key] = value
    else:
        counter.pop(key, None)


def _site(doc: Doc) -> str:
    return doc["programme"] + SEP + (doc["site"] or "-")


def _counted(doc: Doc | None) -> Iterable[tuple[str, str]]:
    """The counters a case contributes to while it is in this state."""
    if doc is None:
        return
    yield "cases_by_stage", _site(doc) + SEP + doc["stage"]
    for h in doc["handovers"].values():
        yield (
            "handovers_by_state",
            SEP.join((doc["programme"], h["from_agency"], h["to_agency"], h["kind"], h["state"])),
        )
    if doc["stage"] in OCCUPYING and doc["assignment_started_at"] is not None:
        yield "places_used", _site(doc)


def _hours(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() / 3600


def dashboard_snapshot(doc: Doc | None) -> dict[str, Any] | None:
    """What ``dashboard_delta`` needs to know of a case before an event (cheap to take)."""
    if doc is None:
        return None
    return {
        "counted": list(_counted(doc)),
        "handover_states": {k: h["state"] for k, h in doc["handovers"].items()},
        "assignment_started": doc["assignment_started_at"] is not None,
        "employed": doc["employment"] is not None,
    }


def dashboard_delta(state: dict[str, Any], before: dict[str, Any] | None, after: Doc) -> None:
    """Fold the change from ``before`` (a ``dashboard_snapshot``) to ``after``."""
    for name, key in before["counted"] if before is not None else ():
        _bump(state[name], key, -1)
    for name, key in _counted(after):
        _bump(state[name], key, +1)

    previous = before["handover_states"] if before is not None else {}
    for handover_id, h in after["handovers"].items():
        was_state = previous.get(handover_id)
        if h["state"] == "accepted" and was_state == "offered":
            pair = h["from_agency"] + SEP + h["to_agency"]
            state["offer_to_accept_hours"].setdefault(pair, []).append(
                round(_hours(h["offered_at"], h["decided_at"]), 3)
            )
        if h["state"] == "completed" and was_state == "accepted" and h["decide_due_at"] is not None:
            met = datetime.fromisoformat(h["completed_at"]) <= datetime.fromisoformat(
                h["decide_due_at"]
            )
            tally = state["rehab_decisions"].setdefault(h["to_agency"], [0, 0])
            tally[0 if met else 1] += 1

    started = after["assignment_started_at"]
    if started is not None and not (before is not None and before["assignment_started"]):
        _bump(state["assigned"], _site(after), +1)
    employment = after["employment"]
    if employment is not None and not (before is not None and before["employed"]) and started:
        begun = date.fromisoformat(employment["start_date"])
        days = (begun - datetime.fromisoformat(started).date()).days
        state["assignment_to_employment_days"].setdefault(_site(after), []).append(days)
        if days <= 365:
            _bump(state["employed_within_12_months"], _site(after), +1)


def dashboard_step(
    state: dict[str, Any], before: dict[str, Any] | None, after: Doc
) -> dict[str, Any]:
    """``dashboard_delta(state, before, after)``, returning ``dashboard_snapshot(after)``
    (plus what ``_relevant`` saw): a runner keeps it as the case's next ``before``."""
    snapshot, ops = dashboard_ops(before, after)
    apply_dashboard_ops(state, ops)
    return snapshot


# What ``dashboard_delta`` does to the totals for one event, worked out from the case
# alone (``dashboard_ops``), to be applied to the totals later, in event order
# (``apply_dashboard_ops``). A runner works out a page's events case by case, while
# each case is at hand, and applies them all in order after. ``(same, old, new,
# changes)``: ``old``/``new`` are the counters before and after, ``changes`` the
# samples, tallies and counts added, in ``dashboard_delta``'s order.
DashboardOps = tuple[bool, Any, Any, tuple[tuple[Any, ...], ...]]


def dashboard_ops(before: dict[str, Any] | None, after: Doc) -> tuple[dict[str, Any], DashboardOps]:
    """``(dashboard_snapshot(after) plus what _relevant saw, ops)``."""
    relevant = (  # _relevant(after), inline: this runs for every event
        after["programme"],
        after["site"],
        after["stage"],
        after["assignment_started_at"] is not None,
        after["employment"] is not None,
        [
            (k, h["from_agency"], h["to_agency"], h["kind"], h["state"])
            for k, h in after["handovers"].items()
        ],
    )
    if before is not None and before.get("relevant") == relevant:
        # Nothing the delta reads changed (most events: notes, appointments, reads):
        # the counters' -1 and +1 cancel out; no sample, tally or count is added.
        return before, (True, before["counted"], before["counted"], ())
    counted = list(_counted(after))
    previous = before["handover_states"] if before is not None else {}
    changes: list[tuple[Any, ...]] = []
    states: dict[str, str] = {}
    for handover_id, h in after["handovers"].items():
        now = states[handover_id] = h["state"]
        if now == "accepted":
            if previous.get(handover_id) == "offered":
                pair = h["from_agency"] + SEP + h["to_agency"]
                hours = round(_hours(h["offered_at"], h["decided_at"]), 3)
                changes.append(("offer_to_accept_hours", pair, hours))
        elif (
            now == "completed"
            and previous.get(handover_id) == "accepted"
            and h["decide_due_at"] is not None
        ):
            met = datetime.fromisoformat(h["completed_at"]) <= datetime.fromisoformat(
                h["decide_due_at"]
            )
            changes.append(("rehab_decisions", h["to_agency"], 0 if met else 1))
    started = after["assignment_started_at"]
    if started is not None and not (before is not None and before["assignment_started"]):
        changes.append(("assigned", _site(after), 1))
    employment = after["employment"]
    if employment is not None and not (before is not None and before["employed"]) and started:
        begun = date.fromisoformat(employment["start_date"])
        days = (begun - datetime.fromisoformat(started).date()).days
        changes.append(("assignment_to_employment_days", _site(after), days))
        if days <= 365:
            changes.append(("employed_within_12_months", _site(after), 1))
    snapshot = {
        "counted": counted,
        "handover_states": states,
        "assignment_started": started is not None,
        "employed": employment is not None,
        "relevant": relevant,
    }
    old = before["counted"] if before is not None else ()
    return snapshot, (False, old, counted, tuple(changes))


def apply_dashboard_ops(state: dict[str, Any], ops: DashboardOps) -> None:
    """Apply ``dashboard_ops``' result: the totals and their keys' order come out as
    ``dashboard_delta`` leaves them."""
    same, old, new, changes = ops
    if same:
        # Skipped only when no counter would drop to zero on the way (and so be
        # removed and re-added at the end of its dict): then -1 and +1 change nothing.
        n = len(old)
        for name, key in old:
            if state[name].get(key, 0) <= n:
                break
        else:
            return
    for name, key in old:
        _bump(state[name], key, -1)
    for name, key in new:
        _bump(state[name], key, +1)
    for name, key, value in changes:
        if name in _SAMPLED:
            state[name].setdefault(key, []).append(value)
        elif name == "rehab_decisions":
            state[name].setdefault(key, [0, 0])[value] += 1
        else:
            _bump(state[name], key, value)


_SAMPLED = ("offer_to_accept_hours", "assignment_to_employment_days")


def _relevant(doc: Doc) -> tuple[Any, ...]:
    """All of a case that ``dashboard_delta`` reads, but for fields it reads only when
    one of these changes (a handover's times, the employment's start date)."""
    return (
        doc["programme"],
        doc["site"],
        doc["stage"],
        doc["assignment_started_at"] is not None,
        doc["employment"] is not None,
        [
            (k, h["from_agency"], h["to_agency"], h["kind"], h["state"])
            for k, h in doc["handovers"].items()
        ],
    )


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(q * 100) - 1]


def dashboard_figures(
    state: Mapping[str, Any],
    open_offers: Iterable[Mapping[str, Any]],
    now: datetime,
    capacity: Mapping[str, Mapping[str, int]] | None = None,
) -> dict[str, Any]:
    """``open_offers``: inbox rows (agency, programme, site, due_at). ``capacity``:
    ``{programme: {site: places}}``."""
    capacity = capacity or {}
    offers = list(open_offers)
    overdue: dict[str, list[int]] = {}
    for row in offers:
        tally = overdue.setdefault(row["agency"], [0, 0])
        tally[0] += 1
        if datetime.fromisoformat(row["due_at"]) < now:
            tally[1] += 1

    def split(key: str, *names: str) -> dict[str, str]:
        return dict(zip(names, key.split(SEP), strict=True))

    sites = set(state["assigned"]) | set(state["places_used"])
    sites |= {f"{p}{SEP}{s}" for p, per_site in capacity.items() for s in per_site}
    return {
        "generated_at": now.isoformat(),
        "cases_by_stage": [
            {**split(k, "programme", "site", "stage"), "count": n}
            for k, n in sorted(state["cases_by_stage"].items())
        ],
        "handovers_by_state": [
            {**split(k, "programme", "from_agency", "to_agency", "kind", "state"), "count": n}
            for k, n in sorted(state["handovers_by_state"].items())
        ],
        "offer_to_accept": [
            {
                **split(k, "from_agency", "to_agency"),
                "count": len(hours),
                "median_hours": round(statistics.median(hours), 2),
                "p90_hours": round(_quantile(hours, 0.9), 2),
            }
            for k, hours in sorted(state["offer_to_accept_hours"].items())
        ],
        "assignment_to_employment": [
            {
                **split(k, "programme", "site"),
                "count": len(days),
                "median_days": statistics.median(days),
            }
            for k, days in sorted(state["assignment_to_employment_days"].items())
        ],
        "employed_within_12_months": [
            {
                **split(k, "programme", "site"),
                "assigned": assigned,
                "employed": state["employed_within_12_months"].get(k, 0),
                "share": round(state["employed_within_12_months"].get(k, 0) / assigned, 3),
            }
            for k, assigned in sorted(state["assigned"].items())
        ],
        "places": [
            {
                **split(k, "programme", "site"),
                "used": state["places_used"].get(k, 0),
                "capacity": capacity.get(k.split(SEP)[0], {}).get(k.split(SEP)[1]),
            }
            for k in sorted(sites)
        ],
        "open_offers": [
            {"agency": agency, "open": counts[0], "overdue": counts[1]}
            for agency, counts in sorted(overdue.items())
        ],
        "overdue_handovers": sorted(
            (
                {k: row.get(k) for k in OVERDUE_KEYS}
                for row in offers
                if datetime.fromisoformat(row["due_at"]) < now
            ),
            key=lambda r: (datetime.fromisoformat(r["due_at"]), r.get("handover_id") or ""),
        ),
        "rehab_decisions": [
            {"agency": agency, "met": met, "missed": missed}
            for agency, (met, missed) in sorted(state["rehab_decisions"].items())
        ],
    }


_COUNTERS = (
    "cases_by_stage",
    "handovers_by_state",
    "assigned",
    "employed_within_12_months",
    "places_used",
)
_SAMPLES = ("offer_to_accept_hours", "assignment_to_employment_days")


def merge_states(states: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Totals kept apart (e.g. one per Kafka partition) as one."""
    merged = empty_state()
    for state in states:
        for name in _COUNTERS:
            for key, count in state[name].items():
                _bump(merged[name], key, count)
        for name in _SAMPLES:
            for key, values in state[name].items():
                merged[name].setdefault(key, []).extend(values)
        for agency, (met, missed) in state["rehab_decisions"].items():
            tally = merged["rehab_decisions"].setdefault(agency, [0, 0])
            tally[0] += met
            tally[1] += missed
    return merged
