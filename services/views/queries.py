"""Reads of the views: plain dicts in the shapes API.md names."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import orjson

from projections.case_view import case_view
from projections.dashboard import (
    NO_SITE,
    dashboard_figures,
    empty_state,
    figures_at,
    figures_of_cases,
    programme_sites,
    scoped_figures,
    totals_figures,
)
from projections.dashboard import programmes_of as programmes_in
from projections.inbox import with_overdue
from services.errors import CaseNotFound
from services.views.sql.schema import tracking_name

OFFER_COLUMNS = "handover_id, case_id, agency, from_agency, kind, programme, site, due_at"
DOC_PAGE = 500  # case documents read per query (within every database's parameter limit)


def _where(programme: str | None, site: str | None, p: str) -> tuple[str, tuple[str, ...]]:
    clauses, params = [], []
    if programme is not None:
        clauses.append(f"programme = {p}")
        params.append(programme)
    if site == NO_SITE:
        clauses.append("site IS NULL")
    elif site is not None:
        clauses.append(f"site = {p}")
        params.append(site)
    return " AND ".join(clauses), tuple(params)


class ViewQueries:
    def __init__(self, views: Any, capacity: Mapping[str, Mapping[str, int]] | None = None) -> None:
        self._views = views
        self._p = views.P
        self._capacity = capacity or {}
        # The dashboard totals as last read, with the figures they alone decide, and
        # the (generation, position) they were read at: read again once either moves.
        self._totals_read: tuple[Any, dict[str, Any], dict[str, Any]] | None = None

    def inbox(self, agency: str, now: datetime) -> dict[str, Any]:
        rows = self._views.query(
            "SELECT handover_id, case_id, kind, from_agency, offered_at, due_at "
            f"FROM view_inbox WHERE agency = {self._p} ORDER BY offered_ts, handover_id",
            (agency,),
        )
        return {"items": [with_overdue(row, now) for row in rows]}

    def caseload(
        self, agency: str, *, limit: int = 200, after: str | None = None
    ) -> dict[str, Any]:
        """One page, in case id order (keyset on the primary key, so every page costs
        the same however large the caseload); ``next`` is the ``after`` of the next page."""
        rows = self._views.query(
            "SELECT case_id, programme, site, stage, lead_agency, coach, next_due_at, "
            f"last_activity_at FROM view_caseload WHERE agency = {self._p} "
            f"AND case_id > {self._p} ORDER BY case_id LIMIT {self._p}",
            (agency, after or "", limit + 1),
        )
        more = len(rows) > limit
        items = rows[:limit]
        return {"items": items, "next": items[-1]["case_id"] if more else None}

    def case_doc(self, case_id: str) -> dict[str, Any]:
        rows = self._views.query(
            f"SELECT doc FROM view_case_docs WHERE case_id = {self._p}", (case_id,)
        )
        if not rows:
            raise CaseNotFound(f"case {case_id} does not exist")
        return json.loads(rows[0]["doc"])

    def case_for(self, case_id: str, agency: str, now: datetime) -> dict[str, Any]:
        return case_view(self.case_doc(case_id), agency, now)

    def audit_trail(self, case_id: str) -> list[dict[str, Any]]:
        return self._views.query(
            "SELECT position, type, agency, actor, occurred_at, recorded_at, legal_basis, hash "
            f"FROM view_audit WHERE case_id = {self._p} ORDER BY position",
            (case_id,),
        )

    def dashboard(
        self,
        now: datetime,
        *,
        programme: str | None = None,
        site: str | None = None,
        agency: str | None = None,
    ) -> dict[str, Any]:
        """The figures; with ``programme`` and/or ``site`` (``-``: cases without a
        site), those of that programme's or site's cases alone; with ``agency``, as
        that agency may see them (``scoped_figures``: its programmes, and the overdue
        handovers of its own cases only, selected so in SQL)."""
        state, of_totals = self._totals_and_figures()
        if programme is None and site is None:
            figures = self._whole(state, of_totals, now, agency)
        else:
            figures = self._part(state, now, programme, site, agency)
        if agency is None:
            return figures
        programmes = programmes_in(state, agency)
        if programmes is None:  # totals stored before they counted them
            programmes = self.programmes_of(agency)
        return scoped_figures(figures, programmes, None)

    def _totals(self) -> dict[str, Any]:
        rows = self._views.query("SELECT doc FROM view_dashboard WHERE name = 'totals'")
        state: dict[str, Any] = json.loads(rows[0]["doc"]) if rows else empty_state()
        return state

    def _totals_and_figures(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The totals and ``totals_figures`` of them, kept while the dashboard's tracked
        position (and the views' generation: a swap) stands; totals and position are
        committed together, so a position names one state of the totals. (Totals read
        just after a newer commit than the position are newer, never older.)"""
        at = self._views.read_state([tracking_name("dashboard")])
        kept = self._totals_read
        if kept is not None and kept[0] == at:
            return kept[1], kept[2]
        state = self._totals()
        figures = totals_figures(state, self._capacity)
        self._totals_read = (at, state, figures)
        return state, figures

    def _whole(
        self,
        state: dict[str, Any],
        of_totals: dict[str, Any],
        now: datetime,
        agency: str | None,
    ) -> dict[str, Any]:
        """The open offers counted in the totals; of the inbox, only the overdue rows
        (by the deadline's index): what the read costs grows with the overdue
        handovers shown, not with every open offer or case."""
        open_counts = state.get("open_offers")
        if open_counts is None:  # totals stored before they counted open offers
            offers = self._views.query(f"SELECT {OFFER_COLUMNS} FROM view_inbox")
            if agency is not None:
                mine = set(self.case_ids_of(agency))
                figures = dashboard_figures(state, offers, now, self._capacity)
                figures["overdue_handovers"] = [
                    row for row in figures["overdue_handovers"] if row["case_id"] in mine
                ]
                return figures
            return dashboard_figures(state, offers, now, self._capacity)
        p, due = self._p, now.timestamp()
        overdue_counts = {
            row["agency"]: row["n"]
            for row in self._views.query(
                f"SELECT agency, COUNT(*) AS n FROM view_inbox WHERE due_ts < {p} GROUP BY agency",
                (due,),
            )
        }
        own, params = "", (due, *(() if agency is None else (agency,)))
        if agency is not None:
            own = f" AND case_id IN (SELECT case_id FROM view_caseload WHERE agency = {p})"
        overdue = self._views.query(
            f"SELECT {OFFER_COLUMNS} FROM view_inbox WHERE due_ts < {p}{own} "
            "ORDER BY due_ts, handover_id",
            params,
        )
        return figures_at(
            state, open_counts, overdue_counts, overdue, now, self._capacity, of_totals=of_totals
        )

    def _part(
        self,
        state: dict[str, Any],
        now: datetime,
        programme: str | None,
        site: str | None,
        agency: str | None,
    ) -> dict[str, Any]:
        # The stored totals are kept per site or per agency pair, not both: a part is
        # summed at read time from its cases' documents, by the same reducer.
        where, params = _where(programme, site, self._p)
        ids = [
            row["case_id"]
            for row in self._views.query(
                f"SELECT DISTINCT case_id FROM view_caseload WHERE {where}", params
            )
        ]
        offers = self._views.query(f"SELECT {OFFER_COLUMNS} FROM view_inbox WHERE {where}", params)
        capacity = {
            p: {s: n for s, n in per_site.items() if site is None or s == site}
            for p, per_site in self._capacity.items()
            if programme is None or p == programme
        }
        figures = figures_of_cases(self._case_docs(ids), offers, now, capacity)
        figures["sites"] = programme_sites(state, self._capacity)  # the choices stay whole
        if agency is not None:  # its own cases of this part
            mine = {
                row["case_id"]
                for row in self._views.query(
                    f"SELECT case_id FROM view_caseload WHERE agency = {self._p} AND {where}",
                    (agency, *params),
                )
            }
            figures["overdue_handovers"] = [
                row for row in figures["overdue_handovers"] if row["case_id"] in mine
            ]
        return figures

    def _case_docs(self, case_ids: list[str]) -> Iterator[dict[str, Any]]:
        for start in range(0, len(case_ids), DOC_PAGE):
            page = case_ids[start : start + DOC_PAGE]
            marks = ", ".join([self._p] * len(page))
            for row in self._views.query(
                f"SELECT doc FROM view_case_docs WHERE case_id IN ({marks})", tuple(page)
            ):
                yield json.loads(row["doc"])

    def programmes_of(self, agency: str) -> list[str]:
        """The programmes of the cases ``agency`` is involved in."""
        rows = self._views.query(
            f"SELECT DISTINCT programme FROM view_caseload WHERE agency = {self._p}", (agency,)
        )
        return sorted(row["programme"] for row in rows if row["programme"] is not None)

    def case_ids_of(self, agency: str) -> list[str]:
        rows = self._views.query(
            f"SELECT case_id FROM view_caseload WHERE agency = {self._p}", (agency,)
        )
        return [row["case_id"] for row in rows]

    # ---- for the pages (issue 15) ----

    def cases_with_pseudonym(self, pseudonym: str, *, limit: int = 50) -> list[dict[str, Any]]:
        """The case documents whose participant has this pseudonym (exact, ignoring
        case). A scan of the documents for the pseudonym as stored in their JSON,
        then an exact comparison: no column holds it."""
        needle = '"pseudonym":' + orjson.dumps(pseudonym).decode()
        pattern = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._views.query(
            f"SELECT doc FROM view_case_docs WHERE lower(doc) LIKE lower({self._p}) "
            "ESCAPE '\\' ORDER BY case_id",
            (f"%{pattern}%",),
        )
        wanted = pseudonym.casefold()
        docs = [json.loads(row["doc"]) for row in rows]
        found = [d for d in docs if (d["participant"]["pseudonym"] or "").casefold() == wanted]
        return found[:limit]

    def audit_hash_before(self, position: int) -> str | None:
        """The hash of the audit entry just before ``position`` in the global chain."""
        rows = self._views.query(
            f"SELECT hash FROM view_audit WHERE position < {self._p} "
            "ORDER BY position DESC LIMIT 1",
            (position,),
        )
        return rows[0]["hash"] if rows else None

    def latest_checkpoint(self) -> dict[str, Any] | None:
        rows = self._views.query(
            "SELECT position, head_hash FROM view_audit_checkpoints ORDER BY position DESC LIMIT 1"
        )
        return dict(rows[0]) if rows else None
