"""Property: every read path shows an agency exactly what ``may_see`` allows.

Issue 12, "Tests that must exist": for random valid message sequences and random
agencies, no read path returns a personal item that the disclosure function
(``projections.disclosure.may_see``) denies, and the case view and the history
agree item by item.

The messages come from the rebuild property's model of the case rules
(``tests/integration/test_rebuild_property.py``), tilted towards consents and
handovers that carry data (``DisclosureModel``). Before a message is sent, every
field its payload type marks ``Personal`` (``services.messages.privacy``), and any
text field left unmarked, gets a value of its own, optional fields included: a field
marked tomorrow is covered without touching this test, a dropped mark is noticed,
and a value seen in an answer names where it came from.
Messages go in, and reads come out, over HTTP (``POST /v1/messages``,
``GET /v1/cases/{id}`` and ``/history``) on a real SQLite store; ``hub replay`` for
an agency is ``ReadService.replay``.

The oracle: each value sent is an item of a category from a source agency. For the
items the case view holds (participant fields, notes, plan, measures, employment)
the case document records both; any other value (a handover's reason, an earlier
plan) is its sender's, in the category its mark names. An agency may see an item
when ``may_see`` says so on the case document at the moment of reading, and nobody
sees it after erasure. Then, for each agency read:

* the case view shows exactly the allowed items among those it holds;
* the history shows no item that is not allowed, and of the items the case view
  holds it shows exactly those the case view shows;
* ``replay`` for the agency shows what the case view and the history showed, now
  and as of any earlier moment that was read (what was allowed then);
* an agency not involved gets 404 (as for an unknown case) and nothing; an auditor sees every item;
* apart from ``may_see`` (which could be wrong the same way on every path):
  nothing is shown that no handover to the agency carried under an unrevoked
  consent naming it, unless it is the agency's own or the lead's statutory data
  (``could_see``), and those are always shown (``must_see``); the history names
  no agency its reader's case view keeps from it.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from projections.case_doc import PARTICIPANT_CATEGORIES, Doc
from projections.caseload import involved_agencies
from projections.disclosure import may_see
from services.access import Principal, ReadService
from services.api.app import create_app
from services.bootstrap import Hub, build_hub
from services.demo import demo_id, load_demo
from services.messages import PAYLOAD_TYPES
from services.messages.personal import nested_model
from services.settings import Settings
from tests.http_helpers import bearer, demo_tokens
from tests.integration.test_rebuild_property import AGENCIES, Command, Consent, Handover, Model
from tests.personal_values import personal_paths
from tests.view_helpers import register_test_agencies

AUDITOR = "Prüferin Eigenschaft"
# Birth dates far from every other date the model writes (its days start in 2026).
FIRST_BIRTH_DATE = date(1931, 1, 1)


# The lead's statutory basis as README and ``projections.disclosure`` declare it.
LEAD_TASK = frozenset({"identity", "contact", "plan", "employment_history"})
IDENTITY = frozenset({"identity", "contact"})  # reach others only by an accepted handover
LONG_ENOUGH = 25  # messages on a case before it may close
# Categories a consent may cover here: with plan and employment history a handover
# can carry every kind of item the case view holds.
CONSENT_CATEGORIES = ("health", "contact", "identity", "notes", "plan", "employment_history")


class DisclosureModel(Model):
    """The rebuild property's model, with consents aimed where handovers can go.

    Its consents name random recipients, so a handover that carries data under one
    is rare there. Here a consent names agencies its source may offer a handover to
    and may cover more categories; the grant's payload lists are the ones the model
    keeps, so changing them in place keeps the model's idea of what is covered."""

    def __init__(self, draw: Any, cases: int) -> None:
        super().__init__(draw, cases)
        self.carried: dict[str, set[tuple[str, str]]] = {}  # case -> (sender, category)
        self.sent: Counter[str] = Counter()  # messages per case

    def next_message(self) -> dict[str, Any] | None:
        message = super().next_message()
        if message is not None:
            self.sent[message["case_id"]] += 1
        return message

    def commands(self, c: Any) -> dict[str, list[Command]]:
        found = super().commands(c)
        if c.opened and not c.closed:
            # Erasure only after closure here (the rebuild property covers erasure of
            # an open case): an erased case shows nobody anything.
            # Closure only once a case has a history to read.
            found["finish"] = [
                cmd
                for cmd in found["finish"]
                if cmd[0] != "participant.erased"
                and (cmd[0] != "case.closed" or self.sent[c.case_id] >= LONG_ENOUGH)
            ]
            # Acceptance as often as the other decisions together: what was handed
            # over and taken on is what a receiver sees.
            accepts = [cmd for cmd in found["decide"] if cmd[0] == "handover.accepted"]
            found["decide"] += accepts * 2
            # Notes are the items whose category and source vary most: more of them.
            notes = [cmd for cmd in found["case"] if cmd[0] == "note.added"]
            found["case"] += notes * 4
            # Consents as often as offers (a handover carries data only under one), and
            # revocations as often as decisions (what only they allowed must go).
            found["offer"] += found["consent"][:1]
            found["decide"] += found["consent"][1:]
            # Notes by a sender in a category it handed over: items a receiver may see.
            if not c.erased:
                found["case"] += [
                    ("note.added", sender, {"text": "Notiz", "category": category}, _nothing)
                    for sender, category in sorted(self.carried.get(c.case_id, ()))
                    if sender in c.involved
                ]
        return found

    def _handover_commands(self, c: Any) -> list[Command]:
        """Half the time the offer goes where a consent covers data, and carries some
        (the model's own offers mostly carry nothing)."""
        found = super()._handover_commands(c)
        covered = [
            (sender, kind, receiver, categories)
            for sender in c.involved
            for kind, receivers in sorted(self._offers(c, sender).items())
            for receiver in receivers
            if (categories := sorted(self._covered(c, sender, receiver)))
        ]
        # (False, hypothesis's simplest draw, takes the covered offer.)
        if not covered or self.draw(st.booleans()):
            return found
        sender, kind, receiver, categories = self.pick(covered)
        handover_id = self.new_id("handover")

        carried = self.draw(st.lists(st.sampled_from(categories), min_size=1, unique=True))

        def offer() -> None:
            c.handovers[handover_id] = Handover(kind, sender, receiver, offered_at=self.hours)
            self.carried.setdefault(c.case_id, set()).update((sender, x) for x in carried)

        payload = {
            "handover_id": handover_id,
            "kind": kind,
            "to_agency": receiver,
            "data_categories": carried,
        }
        found[0] = ("handover.offered", sender, payload, offer)
        return found

    def _consent_commands(self, c: Any) -> list[Command]:
        """The model's revocations, and a grant of its own: to agencies its source may
        offer a handover to, over more categories, mostly for years (the model's
        consents are as often short, expired by the hub's clock and never used)."""
        found = super()._consent_commands(c)
        source = found[0][1]
        offers = self._offers(c, source)
        targets = sorted({receiver for receivers in offers.values() for receiver in receivers})
        others = [a for a in AGENCIES if a != source]
        recipients = self.draw(
            st.lists(st.sampled_from(targets or others), min_size=1, max_size=2, unique=True)
        )
        categories = self.draw(
            st.lists(st.sampled_from(CONSENT_CATEGORIES), min_size=1, unique=True)
        )
        lasts = self.draw(st.sampled_from([None, 10 * 365 * 24, 100]))
        consent_id = f"c-{self.counter}-{len(c.consents)}"
        payload: dict[str, Any] = {
            "consent_id": consent_id,
            "categories": categories,
            "source_agency": source,
            "recipients": recipients,
            "valid_from": self.at(),
        }
        if lasts is not None:
            payload["valid_until"] = self.at(lasts)

        def grant() -> None:
            until = None if lasts is None else self.hours + lasts
            c.consents[consent_id] = Consent(categories, source, recipients, until)

        return [("consent.granted", source, payload, grant), *found[1:]]


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Sent:
    """A personal value as sent: which case, message type, path, and sender."""

    case_id: str
    type: str
    path: str
    agency: str
    category: str


@dataclass
class Ledger:
    """Every personal value sent, by the value itself (each is unique)."""

    values: dict[str, Sent] = field(default_factory=dict)
    erased: set[str] = field(default_factory=set)  # cases whose key is destroyed

    def of_case(self, case_id: str) -> dict[str, Sent]:
        return {v: s for v, s in self.values.items() if s.case_id == case_id}


def _field_at(model: type[BaseModel], path: str) -> FieldInfo:
    head, _, rest = path.partition(".")
    info = model.model_fields[head]
    if not rest:
        return info
    inner = nested_model(info)
    assert inner is not None, path
    return _field_at(inner, rest)


def _value_for(info: FieldInfo, token: str, serial: int) -> Any:
    """A value ``info`` accepts that is ``token``: a text, a list of two, or a date."""
    adapter: TypeAdapter[Any] = TypeAdapter(info.annotation)
    birth = FIRST_BIRTH_DATE + timedelta(days=serial)
    for candidate in (token, [f"{token}-a", f"{token}-b"], birth):
        try:
            adapter.validate_python(candidate)
        except ValidationError:
            continue
        return candidate.isoformat() if isinstance(candidate, date) else candidate
    raise AssertionError(f"no sample value fits {info.annotation}")


def _set(payload: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        payload = payload.setdefault(key, {})
    payload[last] = value


def _has(payload: dict[str, Any], path: str) -> bool:
    for key in path.split("."):
        if not isinstance(payload, dict) or key not in payload:
            return False
        payload = payload[key]
    return payload is not None


def personalise(message: dict[str, Any], ledger: Ledger) -> None:
    """Gives every personal field of ``message`` (``tests.personal_values``: the
    marked ones, and any text field left unmarked) a value of its own and notes it in
    the ledger. Optional fields are filled too, except on an erased case (no personal
    data is accepted once the key is gone; the model sends none there)."""
    type_ = message["type"]
    model = PAYLOAD_TYPES[type_]
    erased = message["case_id"] in ledger.erased
    for path, category in personal_paths(type_).items():
        if erased and not _has(message["payload"], path):
            continue
        serial = len(ledger.values)
        token = f"PV{serial:05d}-{type_}.{path}"
        value = _value_for(_field_at(model, path), token, serial)
        _set(message["payload"], path, value)
        sent = Sent(message["case_id"], type_, path, message["agency"], category)
        for item in value if isinstance(value, list) else [value]:
            ledger.values[item] = sent
    if type_ == "participant.erased":
        ledger.erased.add(message["case_id"])


def leaves(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from leaves(item)


def held_items(doc: Doc) -> dict[str, tuple[str, str]]:
    """The values the case document holds now, each with its (category, source) as
    the document records them: what the case view is made of."""
    items: dict[str, tuple[str, str]] = {}
    participant = doc["participant"]
    for key, value in participant["fields"].items():
        items[str(value)] = (PARTICIPANT_CATEGORIES.get(key, "identity"), participant["source"])
    for n in doc["notes"]:
        items[str(n["text"])] = (n["category"], n.get("source") or n["agency"])
    plan = doc["plan"]
    if plan is not None:
        for value in [*plan["goals"], *plan["modules"]]:
            items[value] = ("plan", plan["agency"])
    for m in doc["measures"].values():
        for value in (m["title"], m["result"]):
            if value is not None:
                items[value] = ("plan", m["agency"])
    employment = doc["employment"]
    if employment is not None and employment["employer"] is not None:
        items[employment["employer"]] = ("employment_history", employment["agency"])
    return items


@dataclass
class Seen:
    """What one agency was shown of one case at one moment."""

    agency: str
    case_id: str
    at: datetime
    view: set[str]
    history: set[str]


class Hubside:
    """The hub behind its HTTP API, with a token per test agency and an auditor."""

    def __init__(self, hub: Hub, client: TestClient) -> None:
        self.hub, self.client = hub, client
        register_test_agencies(hub)
        self.tokens = {a: hub.tokens.issue_agency_token(a) for a in AGENCIES}
        self.auditor = hub.tokens.issue_auditor_token(AUDITOR)

    def send(self, message: dict[str, Any]) -> None:
        response = self.client.post(
            "/v1/messages", json=message, headers=bearer(self.tokens[message["agency"]])
        )
        assert response.status_code == 201, (message["type"], response.text)
        assert not response.json()["duplicate"]

    def get(self, path: str, token: str) -> tuple[int, Any]:
        response = self.client.get(path, headers=bearer(token))
        return response.status_code, response.json()

    def reads(self) -> ReadService:
        """The service behind the HTTP reads (``hub replay`` calls it too)."""
        return self.client.app.state.api.reads  # type: ignore[attr-defined,no-any-return]

    def doc(self, case_id: str) -> Doc:
        doc = self.hub.queries.case_doc(case_id)
        return self.hub.cipher.reveal(doc)  # type: ignore[no-any-return]


def could_see(doc: Doc, agency: str, category: str, source: str) -> bool:
    """DOMAIN rule 3 as a necessary condition, written apart from ``may_see``: an
    item reaches an agency only as its source, as the lead's statutory task, or by a
    handover to it that carried the category (not declined, withdrawn or forwarded;
    the participant's identity and contact only once accepted) under a consent naming
    it for the category, not revoked."""
    if must_see(doc, agency, category, source):
        return True
    consented = any(
        category in c["categories"] and agency in c["recipients"] and c["revoked_at"] is None
        for c in doc["consents"].values()
    )
    states = {"accepted", "completed"} | (set() if category in IDENTITY else {"offered"})
    return consented and any(
        h["to_agency"] == agency and category in h["data_categories"] and h["state"] in states
        for h in doc["handovers"].values()
    )


def must_see(doc: Doc, agency: str, category: str, source: str) -> bool:
    """Its own items, and the lead its statutory ones: shown, whatever else holds."""
    return agency == source or (agency == doc["lead_agency"] and category in LEAD_TASK)


def named_in(view: dict[str, Any]) -> set[str]:
    """The agencies a case view names: who takes part as far as the reader may know,
    the parties of its handovers and consents, the authors of the items it shows."""
    named = set(view["agencies"]) | {view["lead_agency"]}
    for h in view["handovers"]:
        named |= {h["from_agency"], h["to_agency"]}
    for c in view["consents"]:
        named |= {c["source_agency"], c["granted_by"], c["revoked_by"], *c["recipients"]}
    items = [*view["notes"], *view["measures"], view["plan"], view["employment"]]
    named |= {item["agency"] for item in items if item is not None}
    return named - {None}


def check_reads(side: Hubside, ledger: Ledger, case_id: str, agency: str) -> Seen | None:
    """One agency's case view and history of one case against the oracle."""
    sent = ledger.of_case(case_id)
    others = set(ledger.values) - set(sent)
    doc = side.doc(case_id)
    now = datetime.now(UTC)
    held = held_items(doc)
    item = {v: held.get(v, (s.category, s.agency)) for v, s in sent.items()}
    live = set() if case_id in ledger.erased else set(sent)  # after erasure: nothing
    may = {v for v in live if may_see(doc, agency, *item[v], now)}
    could = {v for v in live if could_see(doc, agency, *item[v])}
    must = {v for v in live if must_see(doc, agency, *item[v])}
    in_view = {v for v in sent if v in held}

    status, view = side.get(f"/v1/cases/{case_id}", side.tokens[agency])
    history_status, history = side.get(f"/v1/cases/{case_id}/history", side.tokens[agency])
    if agency not in involved_agencies(doc):
        assert (status, history_status) == (404, 404), (status, history_status)
        assert not set(leaves(view)) & set(ledger.values)
        assert not set(leaves(history)) & set(ledger.values)
        return None
    assert (status, history_status) == (200, 200), (view, history)
    shown = set(leaves(view)) & set(ledger.values)
    told = set(leaves(history)) & set(ledger.values)
    note(f"{agency} reads {case_id[:8]}: view {sorted(shown)} history {sorted(told)}")

    assert not (shown | told) & others, "another case's data"
    assert shown <= may, f"case view shows what may_see denies: {sorted(shown - may)}"
    assert told <= may, f"history shows what may_see denies: {sorted(told - may)}"
    assert shown == may & in_view, f"case view withholds: {sorted(may & in_view - shown)}"
    assert told & in_view == shown, (
        f"history and case view disagree: history only {sorted(told & in_view - shown)}, "
        f"case view only {sorted(shown - told)}"
    )
    assert shown | told <= could, f"shown without a handover: {sorted((shown | told) - could)}"
    # Nor does the history name an agency the case view keeps from it (that a clinic
    # opened the case is itself health data).
    authors = {item["agency"] for item in history["items"]} - {None}
    assert authors <= named_in(view), f"history names {sorted(authors - named_in(view))}"
    assert must <= told, f"history withholds its own or the lead's: {sorted(must - told)}"
    return Seen(agency, case_id, now, shown, told)


def check_replay(side: Hubside, ledger: Ledger, seen: Seen, as_of: datetime | None) -> None:
    """``hub replay --agency`` shows what the reads of that moment showed."""
    principal = Principal("agency", seen.agency, seen.agency)
    replayed = side.reads().replay(principal, seen.case_id, as_of)
    values = set(ledger.values)
    erased = seen.case_id in ledger.erased
    assert set(leaves(replayed["state"])) & values == (set() if erased else seen.view)
    assert set(leaves(replayed["events"])) & values == (set() if erased else seen.history)


def check_auditor(side: Hubside, ledger: Ledger, case_id: str) -> None:
    status, history = side.get(f"/v1/cases/{case_id}/history", side.auditor)
    assert status == 200
    expected = set() if case_id in ledger.erased else set(ledger.of_case(case_id))
    assert set(leaves(history)) & set(ledger.values) == expected


@settings(
    max_examples=40,
    deadline=None,
    # No shrinking (each example builds a store); the notes list the messages.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_every_read_path_shows_what_disclosure_allows(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        hub = build_hub(Settings(database_url=f"sqlite:///{tmp}/hub.db", var_dir=Path(tmp) / "var"))
        try:
            with TestClient(create_app(hub)) as client:
                side = Hubside(hub, client)
                _run(data, side)
        finally:
            hub.close()


def _run(data: st.DataObject, side: Hubside) -> None:
    model = DisclosureModel(data.draw, cases=data.draw(st.integers(1, 2), label="cases"))
    ledger = Ledger()
    some_agencies = st.lists(st.sampled_from(AGENCIES), min_size=1, max_size=3, unique=True)
    earlier: list[Seen] = []
    for _ in range(data.draw(st.integers(5, 40), label="messages")):
        message = model.next_message()
        if message is None:
            break
        personalise(message, ledger)
        side.send(message)
        if data.draw(st.integers(0, 3), label="read now") == 0:
            for agency in data.draw(some_agencies, label="readers"):
                seen = check_reads(side, ledger, message["case_id"], agency)
                if seen is not None:
                    earlier.append(seen)
    for case in model.cases:
        if not case.opened:
            continue
        check_auditor(side, ledger, case.case_id)
        for agency in AGENCIES:
            seen = check_reads(side, ledger, case.case_id, agency)
            if seen is not None:
                check_replay(side, ledger, seen, None)
    for seen in earlier:
        check_replay(side, ledger, seen, seen.at)


# Reproductions of what the property asks, on the G-A-L scenario (the clinic opens the
# case, the Jobcenter leads it and hands identity on to the chamber), both stores.
GAL_CLINIC, GAL_JC, GAL_CHAMBER = "klinik-oder-spree", "jc-oder-spree", "hwk-ffo"
GAL_NAME = "Erika Musterfrau"


def _gal(hub: Hub) -> tuple[TestClient, dict[str, str], str]:
    tokens = demo_tokens(hub)
    list(load_demo(hub.registry, hub.messages))
    hub.views.catch_up()
    headers = {a: bearer(t) for a, t in tokens.agencies.items()}
    return TestClient(create_app(hub)), headers, str(demo_id("s1/case"))


def test_the_leads_history_shows_the_participant_its_case_view_shows(hub: Hub) -> None:
    """Before: the case view showed the lead its participant (statutory task), the
    history did not (the clinic's opening was not the lead's part)."""
    api, headers, case_id = _gal(hub)
    with api:
        view = api.get(f"/v1/cases/{case_id}", headers=headers[GAL_JC]).json()
        history = api.get(f"/v1/cases/{case_id}/history", headers=headers[GAL_JC]).json()
    assert view["participant"]["name"] == GAL_NAME
    opened = [i for i in history["items"] if i["type"] == "CaseOpened"]
    assert [i["payload"]["participant"].get("name") for i in opened] == [GAL_NAME]


def test_the_history_names_no_agency_the_case_view_keeps_from_the_reader(hub: Hub) -> None:
    """The chamber received the participant's identity from the lead: its history shows
    the name as its case view does, and does not say that a clinic opened the case."""
    api, headers, case_id = _gal(hub)
    with api:
        view = api.get(f"/v1/cases/{case_id}", headers=headers[GAL_CHAMBER]).json()
        history = api.get(f"/v1/cases/{case_id}/history", headers=headers[GAL_CHAMBER])
    assert view["participant"]["name"] == GAL_NAME
    assert GAL_CLINIC not in named_in(view)
    opened = [i for i in history.json()["items"] if i["type"] == "CaseOpened"]
    assert [i["payload"]["participant"].get("name") for i in opened] == [GAL_NAME]
    assert [(i["agency"], i["actor"]) for i in opened] == [(None, None)]
    assert GAL_CLINIC not in history.text
