"""Dashboard figures per programme, site and agency (DOMAIN.md, "Views").

The totals are the sum of what each case contributes in its current state
(``dashboard_snapshot``: counters, samples, tallies). ``dashboard_delta(state,
before, after)`` moves them by the difference for one case change, of one event or
of many at once; it is pure in that it only touches ``state``, a plain dict owned
by the caller (the in-process runner stores it as JSON; the faust worker keeps it in a
table). ``dashboard_figures`` turns totals plus the open offers into the
figures, at a reading moment and against a capacity plan; ``figures_at`` does it
from the open offers counted in the totals and only the overdue ones (what the
view store selects by deadline, so a read need not load every open offer).

Totals stored before a counter existed lack its key: folding leaves an absent
counter absent (it would hold only what changed since), and readers then count
from the rows instead, until a rebuild fills it.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any, cast

from projections.case_doc import Doc
from projections.caseload import involved_agencies
from projections.inbox import inbox_rows

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
NO_SITE = "-"  # the site part of a key for a case opened without a site
DAY = timedelta(days=1)


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
        # Inbox rows per agency they are offered to (the open count of ``open_offers``).
        "open_offers": {},
        # Cases per (agency involved, programme): the programmes an agency takes part in.
        "agency_programmes": {},
    }


def _bump(counter: dict[str, int], key: str, by: int) -> None:
    value = counter.get(key, 0) + by
    if value:
        counter[key] = value
    else:
        counter.pop(key, None)


def _site(doc: Doc) -> str:
    return cast(str, doc["programme"]) + SEP + (doc["site"] or NO_SITE)


def _hours(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() / 3600


# What one case adds to the totals in its current state: a multiset of entries
# ``(total, key, value)``. Totals are the sum of every case's entries, so a change of a
# case (one event, or a page of them, or a whole rebuild at once) moves the totals by
# the difference of its entries before and after, in any order and at any grain.
Entry = tuple[str, str, Any]
Snapshot = tuple[Entry, ...]
# (entries removed, entries added); None when nothing changed.
DashboardOps = tuple[tuple[Entry, ...], tuple[Entry, ...]] | None

_COUNTERS = (
    "cases_by_stage",
    "handovers_by_state",
    "assigned",
    "employed_within_12_months",
    "places_used",
    "open_offers",
    "agency_programmes",
)
# Samples are kept sorted, so equal histories give equal totals whatever the order
# the cases were folded in (a rebuild folds page by page, a live runner message by
# message).
_SAMPLES = ("offer_to_accept_hours", "assignment_to_employment_days")
_TALLIES = ("rehab_decisions",)  # key -> [met, missed]


def dashboard_snapshot(doc: Doc | None) -> Snapshot | None:
    """The entries a case contributes to the totals (None: no case yet)."""
    if doc is None:
        return None
    site = _site(doc)
    programme = doc["programme"]
    entries: list[Entry] = [("cases_by_stage", site + SEP + doc["stage"], 1)]
    for h in doc["handovers"].values():
        state = h["state"]
        entries.append(
            (
                "handovers_by_state",
                SEP.join((programme, h["from_agency"], h["to_agency"], h["kind"], state)),
                1,
            )
        )
        # Completed is reached only from accepted: both were accepted at decided_at.
        if state in {"accepted", "completed"}:
            pair = h["from_agency"] + SEP + h["to_agency"]
            hours = round(_hours(h["offered_at"], h["decided_at"]), 3)
            entries.append(("offer_to_accept_hours", pair, hours))
            if state == "completed" and h["decide_due_at"] is not None:
                # A late-entered decision counts on the hub's clock unless a document
                # supports its date (the domain chose ``counted_at``); events stored
                # before decisions were their own fact count their completion.
                counted = h.get("decision_counted_at") or h["completed_at"]
                met = datetime.fromisoformat(counted) <= datetime.fromisoformat(h["decide_due_at"])
                entries.append(("rehab_decisions", h["to_agency"], 0 if met else 1))
    entries.extend(("open_offers", row["agency"], 1) for row in inbox_rows(doc))
    if programme is not None:
        entries.extend(
            ("agency_programmes", agency + SEP + programme, 1) for agency in involved_agencies(doc)
        )
    started = doc["assignment_started_at"]
    if started is not None:
        entries.append(("assigned", site, 1))
        if doc["stage"] in OCCUPYING:
            entries.append(("places_used", site, 1))
        employment = doc["employment"]
        if employment is not None:
            begun = date.fromisoformat(employment["start_date"])
            days = (begun - datetime.fromisoformat(started).date()).days
            entries.append(("assignment_to_employment_days", site, days))
            if days <= 365:
                entries.append(("employed_within_12_months", site, 1))
    return tuple(entries)


def dashboard_ops(
    before: Snapshot | None, after: Doc | None
) -> tuple[Snapshot | None, DashboardOps]:
    """``(dashboard_snapshot(after), what moving the totals from before to after takes)``."""
    snapshot = dashboard_snapshot(after)
    if snapshot == before:  # most events: notes, appointments, reads
        return snapshot, None
    if before is None or snapshot is None:  # a new case (or none): no difference to take
        # They differ, so not both are None: the other side is a whole Snapshot.
        return snapshot, ((), cast(Snapshot, snapshot)) if before is None else (before, ())
    old, new = Counter(before), Counter(snapshot)
    removed = tuple((old - new).elements())
    added = tuple((new - old).elements())
    return snapshot, (removed, added)


def dashboard_delta(state: dict[str, Any], before: Snapshot | None, after: Doc) -> None:
    """Fold the change of one case from ``before`` (a ``dashboard_snapshot``) to ``after``."""
    apply_dashboard_ops(state, dashboard_ops(before, after)[1])


def apply_dashboard_ops(state: dict[str, Any], ops: DashboardOps) -> None:
    apply_all_dashboard_ops(state, (ops,))


def apply_all_dashboard_ops(state: dict[str, Any], all_ops: Iterable[DashboardOps]) -> None:
    """Apply many cases' ops at once: new samples are merged into their sorted lists
    in one sort per key rather than one insertion each."""
    new_samples: dict[tuple[str, str], list[Any]] = {}
    for ops in all_ops:
        if ops is None:
            continue
        removed, added = ops
        for name, key, value in removed:
            _take(state, name, key, value)
        for name, key, value in added:
            if name not in state:  # totals stored before this counter: left absent
                continue
            if name in _SAMPLES:
                new_samples.setdefault((name, key), []).append(value)
            elif name in _TALLIES:
                state[name].setdefault(key, [0, 0])[value] += 1
            else:
                _bump(state[name], key, value)
    for (name, key), values in new_samples.items():
        samples = state[name].setdefault(key, [])
        if len(values) == 1:
            bisect.insort(samples, values[0])
        else:
            samples.extend(values)
            samples.sort()  # two sorted runs: merged in linear time


def _take(state: dict[str, Any], name: str, key: str, value: Any) -> None:
    if name not in state:
        return
    if name in _SAMPLES:
        samples = state[name].get(key)
        if not samples:
            return
        i = bisect.bisect_left(samples, value)
        if i < len(samples) and samples[i] == value:
            del samples[i]
        elif value in samples:  # totals stored before samples were kept sorted
            samples.remove(value)
        if not samples:
            del state[name][key]
    elif name in _TALLIES:
        tally = state[name].get(key)
        if tally is None:
            return
        tally[value] -= 1
        if tally == [0, 0]:
            del state[name][key]
    else:
        _bump(state[name], key, -value)


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
    offers = list(open_offers)
    overdue = [row for row in offers if datetime.fromisoformat(row["due_at"]) < now]
    return figures_at(
        state,
        Counter(row["agency"] for row in offers),
        Counter(row["agency"] for row in overdue),
        overdue,
        now,
        capacity,
    )


def figures_at(
    state: Mapping[str, Any],
    open_counts: Mapping[str, int],
    overdue_counts: Mapping[str, int],
    overdue_rows: Iterable[Mapping[str, Any]],
    now: datetime,
    capacity: Mapping[str, Mapping[str, int]] | None = None,
    *,
    of_totals: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The figures from the totals, the open offers per agency offered to (every one,
    and those overdue at ``now``) and the overdue inbox rows to list (all of them, or
    the part a reader may see): what ``dashboard_figures`` counts from every open
    offer, without reading the ones still in time. ``of_totals``: ``totals_figures``
    of these totals, when already computed."""
    figures = dict(of_totals if of_totals is not None else totals_figures(state, capacity))
    figures["generated_at"] = now.isoformat()
    figures["open_offers"] = [
        {
            "agency": agency,
            "open": open_counts.get(agency, 0),
            "overdue": overdue_counts.get(agency, 0),
        }
        for agency in sorted(set(open_counts) | set(overdue_counts))
    ]
    figures["overdue_handovers"] = sorted(
        (
            {
                **{k: row.get(k) for k in OVERDUE_KEYS},
                "days_overdue": days_overdue(row["due_at"], now),
            }
            for row in overdue_rows
        ),
        key=lambda r: (datetime.fromisoformat(r["due_at"]), r.get("handover_id") or ""),
    )
    return {name: figures[name] for name in FIGURES}


# The figures in the order they are answered.
FIGURES = (
    "generated_at",
    "cases_by_stage",
    "handovers_by_state",
    "offer_to_accept",
    "assignment_to_employment",
    "employed_within_12_months",
    "places",
    "open_offers",
    "overdue_handovers",
    "rehab_decisions",
    "sites",
)


def totals_figures(
    state: Mapping[str, Any], capacity: Mapping[str, Mapping[str, int]] | None = None
) -> dict[str, Any]:
    """The figures the totals alone decide (not the reading moment): the same for
    every read until the totals move."""
    capacity = capacity or {}

    def split(key: str, *names: str) -> dict[str, str]:
        return dict(zip(names, key.split(SEP), strict=True))

    sites = set(state["assigned"]) | set(state["places_used"])
    sites |= {f"{p}{SEP}{s}" for p, per_site in capacity.items() for s in per_site}
    return {
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
        "rehab_decisions": [
            {"agency": agency, "met": met, "missed": missed}
            for agency, (met, missed) in sorted(state["rehab_decisions"].items())
        ],
        "sites": programme_sites(state, capacity),
    }


def days_overdue(due_at: str, now: datetime) -> int:
    """The days a deadline has been passed, counting the day begun: one hour late is
    the first day overdue."""
    return math.ceil((now - datetime.fromisoformat(due_at)) / DAY)


def programme_sites(
    state: Mapping[str, Any], capacity: Mapping[str, Mapping[str, int]] | None = None
) -> list[dict[str, str]]:
    """Every (programme, site) the totals or the capacity plan know: what a
    programme or site filter may choose from."""
    keys = {k.rsplit(SEP, 1)[0] for k in state["cases_by_stage"]}
    keys |= set(state["assigned"]) | set(state["places_used"])
    keys |= {f"{p}{SEP}{s}" for p, per_site in (capacity or {}).items() for s in per_site}
    return [
        {"programme": programme, "site": site}
        for programme, site in sorted(tuple(k.split(SEP)) for k in keys)
    ]


def figures_of_cases(
    docs: Iterable[Doc],
    open_offers: Iterable[Mapping[str, Any]],
    now: datetime,
    capacity: Mapping[str, Mapping[str, int]] | None = None,
) -> dict[str, Any]:
    """The figures of these cases alone (one programme's, one site's): their totals
    summed from each case's entries, as the stored totals are, so a part of the
    cases gives exactly its part of the whole."""
    state = empty_state()
    apply_all_dashboard_ops(state, (dashboard_ops(None, doc)[1] for doc in docs))
    return dashboard_figures(state, open_offers, now, capacity)


def named_agencies(figures: Mapping[str, Any]) -> list[str]:
    """Every agency id the figures name (to be shown by its display name)."""
    named: set[str] = set()
    for name, fields in (
        ("handovers_by_state", ("from_agency", "to_agency")),
        ("offer_to_accept", ("from_agency", "to_agency")),
        ("open_offers", ("agency",)),
        ("overdue_handovers", ("agency", "from_agency")),
        ("rehab_decisions", ("agency",)),
    ):
        for row in figures.get(name, ()):
            named.update(row[field] for field in fields if row.get(field))
    return sorted(named)


def accept_deadlines(
    figures: Mapping[str, Any], accept_days: Callable[[str, str], int]
) -> list[dict[str, Any]]:
    """For each row of ``offer_to_accept``: the handover kinds accepted between that
    pair (from ``handovers_by_state``) and the shortest accept deadline among them in
    days, by ``accept_days(programme, kind)`` (the programme's policy): the line its
    median and 90th percentile are read against."""
    kinds: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for row in figures["handovers_by_state"]:
        if row["state"] in {"accepted", "completed"}:  # what offer_to_accept samples
            pair = (row["from_agency"], row["to_agency"])
            kinds.setdefault(pair, set()).add((row["programme"], row["kind"]))
    deadlines = []
    for row in figures["offer_to_accept"]:
        seen = kinds.get((row["from_agency"], row["to_agency"]), set())
        deadlines.append(
            {
                "from_agency": row["from_agency"],
                "to_agency": row["to_agency"],
                "kinds": sorted({kind for _, kind in seen}),
                "accept_days": min((accept_days(p, k) for p, k in seen), default=None),
            }
        )
    return deadlines


def merge_states(states: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Totals kept apart (e.g. one per Kafka partition) as one."""
    merged = empty_state()
    for state in states:
        for name in _COUNTERS:
            for key, count in state.get(name, {}).items():
                _bump(merged[name], key, count)
        for name in _SAMPLES:
            for key, values in state[name].items():
                merged[name].setdefault(key, []).extend(values)
                merged[name][key].sort()
        for agency, (met, missed) in state["rehab_decisions"].items():
            tally = merged["rehab_decisions"].setdefault(agency, [0, 0])
            tally[0] += met
            tally[1] += missed
    return merged


# Figures keyed by programme, and those keyed by agencies (they carry no programme).
_BY_PROGRAMME = (
    "cases_by_stage",
    "handovers_by_state",
    "assignment_to_employment",
    "employed_within_12_months",
    "places",
    "sites",
)


def programmes_of(state: Mapping[str, Any], agency: str) -> list[str] | None:
    """The programmes of the cases ``agency`` is involved in, by the totals (None:
    totals stored before they counted them)."""
    counted = state.get("agency_programmes")
    if counted is None:
        return None
    head = agency + SEP
    return sorted(key[len(head) :] for key in counted if key.startswith(head))


def scoped_figures(
    figures: Mapping[str, Any], programmes: Iterable[str], own_cases: Iterable[str] | None
) -> dict[str, Any]:
    """The dashboard as an agency may see it (DOMAIN "Views"): the figures of the
    programmes it takes part in, and overdue handovers only of its own cases
    (``own_cases`` None: the figures list only those already, as the view store
    selects them).

    Figures kept per agency pair (offer to acceptance, open offers, § 14 decisions)
    carry no programme; they are shown for the agencies taking part in those
    programmes (those that sent or received a handover in them)."""
    wanted = set(programmes)
    scoped: dict[str, Any] = dict(figures)
    for name in _BY_PROGRAMME:
        scoped[name] = [row for row in figures.get(name, ()) if row.get("programme") in wanted]
    agencies = {row["from_agency"] for row in scoped["handovers_by_state"]}
    agencies |= {row["to_agency"] for row in scoped["handovers_by_state"]}
    scoped["offer_to_accept"] = [
        row
        for row in figures["offer_to_accept"]
        if row["from_agency"] in agencies and row["to_agency"] in agencies
    ]
    scoped["open_offers"] = [row for row in figures["open_offers"] if row["agency"] in agencies]
    scoped["rehab_decisions"] = [
        row for row in figures["rehab_decisions"] if row["agency"] in agencies
    ]
    if own_cases is not None:
        mine = set(own_cases)
        scoped["overdue_handovers"] = [
            row for row in figures["overdue_handovers"] if row["case_id"] in mine
        ]
    scoped["programmes"] = sorted(wanted)
    return scoped
