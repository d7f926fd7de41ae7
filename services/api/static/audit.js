// The auditor's pages: /audit (find a case by id or pseudonym) and
// /audit/cases/{id} (its timeline with both clocks, the state "as of" a moment from
// the replay the CLI uses, and the hash chain check). Every call the page makes is
// recorded by the hub as the auditor's read.
import {
  $, agencyNames, api, badge, el, fillTable, label, moment, shown, startPage, t, table,
} from "./common.js";
import { details, legalBasis } from "./details.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
let names = null;
// What the page shows, kept so a language switch redraws without reading again.
const shownNow = { results: null, current: null, replay: null, history: null, chain: null, caseId: null };

function caseIdFromPath() {
  const match = /^\/audit\/cases\/([^/]+)$/.exec(window.location.pathname);
  return match ? decodeURIComponent(match[1]) : null;
}

// ---- search -----------------------------------------------------------------------

async function search(query) {
  const param = UUID.test(query) ? `case_id=${encodeURIComponent(query)}` : `pseudonym=${encodeURIComponent(query)}`;
  const { data } = await api(`/v1/audit/cases?${param}`);
  shownNow.results = data.items;
  drawResults();
}

function drawResults() {
  const holder = $("search-results");
  holder.replaceChildren();
  const items = shownNow.results;
  if (items === null) return;
  if (!items.length) {
    holder.append(el("p", { role: "status" }, t("searchNone")));
    return;
  }
  const headers = [t("pseudonym"), t("programme"), t("site"), t("stage"), t("lead"), t("openedAt"), t("timeline")];
  const [node, body] = table(headers, { caption: t("results"), testid: "search-results" });
  fillTable(body, headers, items.map((c) => [
    c.pseudonym, c.programme, shown(c.site), label("stage", c.stage), names.name(c.lead_agency), moment(c.opened_at),
    el("a", { href: `/audit/cases/${c.case_id}` }, `${t("openTimeline")}: ${c.pseudonym}`),
  ]));
  holder.append(node);
}

// ---- one case ---------------------------------------------------------------------

/** The "as of" input (local time) as an ISO moment, or null for "today". */
function chosenMoment() {
  const raw = $("asof-input").value;
  if (!raw) return null;
  const when = new Date(raw);
  return Number.isNaN(when.getTime()) ? null : when.toISOString();
}

function chosenAxis() {
  return document.querySelector("input[name=axis]:checked").value;
}

function toLocalInput(iso) {
  const when = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${when.getFullYear()}-${pad(when.getMonth() + 1)}-${pad(when.getDate())}T${pad(when.getHours())}:${pad(when.getMinutes())}:${pad(when.getSeconds())}`;
}

async function replay(caseId, asOf, axis) {
  const params = new URLSearchParams({ axis });
  if (asOf) params.set("as_of", asOf);
  const { data } = await api(`/v1/cases/${caseId}/replay?${params}`);
  return data;
}

async function loadCase(caseId) {
  shownNow.caseId = caseId;
  $("case").hidden = false;
  $("case-title").textContent = `${t("case")} ${caseId}`;
  const query = new URLSearchParams(window.location.search);
  if (query.get("axis") === "occurred") document.querySelector("input[name=axis][value=occurred]").checked = true;
  if (query.get("as_of")) $("asof-input").value = toLocalInput(query.get("as_of"));
  try {
    shownNow.current = await replay(caseId, null, "recorded");
  } catch (error) {
    $("case-error").textContent = error.describe();
    for (const id of ["asof", "chain", "timeline"]) $(id).hidden = true;
    return;
  }
  drawFacts();
  const [history] = await Promise.all([
    api(`/v1/cases/${caseId}/history`).then((r) => r.data),
    showState(),
  ]);
  shownNow.history = history;
  await checkChain(caseId);
  drawTimeline();
  document.body.dataset.loaded = "true";
}

function drawFacts() {
  const state = shownNow.current.state;
  const facts = $("case-facts");
  facts.replaceChildren();
  if (state === null) return;
  $("case-title").textContent = `${t("case")} ${state.participant.pseudonym}`;
  const rows = [
    [t("caseId"), el("code", {}, state.case_id)],
    [t("programme"), state.programme],
    [t("site"), shown(state.site)],
    [t("stage"), label("stage", state.stage)],
    [t("outcome"), label("outcome", state.outcome)],
    [t("lead"), names.name(state.lead_agency)],
    [t("openedAt"), moment(state.opened_at)],
    [t("closedAt"), moment(state.closed_at)],
  ];
  if (state.erased_at) rows.push([t("erasedAt"), moment(state.erased_at)]);
  for (const [term, value] of rows) facts.append(el("dt", {}, term), el("dd", {}, value));
}

async function showState() {
  const asOf = chosenMoment();
  const axis = chosenAxis();
  const holder = $("state");
  holder.setAttribute("aria-busy", "true");
  try {
    shownNow.replay = await replay(shownNow.caseId, asOf, axis);
  } catch (error) {
    holder.replaceChildren(el("p", { class: "error", role: "alert" }, error.describe()));
    return;
  } finally {
    holder.removeAttribute("aria-busy");
  }
  // The moment in the address, so the view can be shared (never the token).
  const params = new URLSearchParams();
  if (asOf) { params.set("as_of", asOf); params.set("axis", axis); }
  const search = params.toString();
  window.history.replaceState(null, "", `${window.location.pathname}${search ? `?${search}` : ""}`);
  drawState();
  if (shownNow.history) drawTimeline();
}

function drawState() {
  const data = shownNow.replay;
  const holder = $("state");
  holder.replaceChildren();
  const heading = data.as_of
    ? `${t("stateAsOf")} ${moment(data.as_of)} (${t(`axis.${data.axis}`)})`
    : t("stateNow");
  holder.append(el("h3", { "data-testid": "state-heading" }, heading));
  const state = data.state;
  if (state === null) {
    holder.append(el("p", { "data-testid": "no-state" }, t("noState")));
    return;
  }
  const facts = el("dl", { class: "facts" });
  for (const [term, value, id] of [
    [t("stage"), label("stage", state.stage), "state-stage"],
    [t("outcome"), label("outcome", state.outcome), "state-outcome"],
    [t("lead"), names.name(state.lead_agency), "state-lead"],
    [t("agencies"), state.agencies.map((a) => names.name(a)).join(", "), "state-agencies"],
    [t("eventsUpTo"), String(data.events.length), "state-events"],
  ]) {
    facts.append(el("dt", {}, term), el("dd", { "data-testid": id }, value));
  }
  holder.append(facts);

  const hHeaders = [t("kind"), t("from"), t("to"), t("stateCol"), t("offeredAt"), t("due")];
  const [handovers, hBody] = table(hHeaders, { caption: t("handovers"), testid: "state-handovers" });
  fillTable(hBody, hHeaders, state.handovers.map((h) => ({
    attrs: { "data-handover-id": h.handover_id, "data-state": h.state },
    cells: [label("kind", h.kind), names.name(h.from_agency), names.name(h.to_agency), label("state", h.state),
            moment(h.offered_at), moment(h.decide_due_at ?? h.due_at)],
  })));
  const cHeaders = [t("consentId"), t("categories"), t("source"), t("recipients"), t("validFrom"), t("validUntil"), t("stateCol")];
  const [consents, cBody] = table(cHeaders, { caption: t("consents"), testid: "state-consents" });
  fillTable(cBody, cHeaders, state.consents.map((c) => ({
    attrs: { "data-consent-id": c.consent_id, "data-in-force": String(c.in_force) },
    cells: [c.consent_id, c.categories.map((x) => label("category", x)).join(", "), names.name(c.source_agency),
            c.recipients.map((a) => names.name(a)).join(", "), moment(c.valid_from), moment(c.valid_until),
            consentState(c)],
  })));
  holder.append(handovers, consents);
}

function consentState(consent) {
  if (consent.in_force) return badge("in-force", t("inForce"));
  if (consent.revoked_at) return badge("revoked", `${t("revokedAt")} ${moment(consent.revoked_at)}`);
  return badge("not-in-force", t("notInForce"));
}

// ---- the chain --------------------------------------------------------------------

async function checkChain(caseId) {
  const [own, whole] = await Promise.all([
    api(`/v1/audit/cases/${caseId}/verify`).then((r) => r.data),
    api("/v1/audit/verify").then((r) => r.data),
  ]);
  shownNow.chain = { own, whole };
  drawChain();
}

function drawChain() {
  const { own, whole } = shownNow.chain;
  const holder = $("chain-results");
  holder.replaceChildren();
  const line = (testid, title, result, counted) => {
    const verdict = result.ok
      ? el("span", { class: "ok" }, t("chainOk"))
      : el("span", { class: "error" }, `${t("chainBroken")} ${result.first_broken_position} (${label("reason", result.reason)})`);
    return el("p", { class: "result", "data-testid": testid, "data-ok": String(result.ok) },
      el("strong", {}, `${title}: `), verdict, ` – ${counted}`);
  };
  holder.append(
    line("chain-case", t("chainCase"), own, `${own.entries_checked} ${t("entriesChecked")}`),
    line("chain-log", t("chainLog"), whole, `${whole.events_checked} ${t("eventsChecked")}`),
    el("p", {}, el("span", { class: "muted" }, `${t("headHash")}: `), el("code", { "data-testid": "head-hash" }, whole.head_hash)),
    el("p", {}, el("span", { class: "muted" }, `${t("checkpoint")}: `),
      own.checkpoint
        ? el("span", {}, `${t("position")} ${own.checkpoint.position}, `, el("code", {}, own.checkpoint.head_hash))
        : t("checkpointNone")),
  );
}

// ---- the timeline -----------------------------------------------------------------

function isLater(item) {
  const data = shownNow.replay;
  if (!data || !data.as_of) return false;
  const clock = data.axis === "occurred" ? item.occurred_at ?? item.recorded_at : item.recorded_at;
  return new Date(clock) > new Date(data.as_of);
}

function drawTimeline() {
  const holder = $("timeline-body");
  holder.replaceChildren();
  const broken = new Set();
  if (shownNow.chain) {
    for (const result of [shownNow.chain.own, shownNow.chain.whole]) {
      if (!result.ok) broken.add(result.first_broken_position);
    }
  }
  holder.append(el("ul", { class: "legend", "aria-label": t("legend") },
    el("li", {}, badge("late", t("badge.late")), t("legend.late")),
    el("li", {}, badge("read", t("badge.read")), t("legend.read")),
    el("li", {}, badge("later", t("badge.later")), t("legend.later"))));
  const headers = [t("col.position"), t("col.event"), t("col.occurred"), t("col.recorded"), t("col.agency"),
                   t("col.actor"), t("col.basis"), t("col.details")];
  const [node, body] = table(headers, { caption: t("timeline"), testid: "timeline", hideCaption: true });
  fillTable(body, headers, shownNow.history.items.map((item) => {
    const read = item.type === "CaseRead";
    const later = isLater(item);
    const marks = [
      item.late_entry ? badge("late", t("badge.late")) : null,
      read ? badge("read", t("badge.read")) : null,
      later ? badge("later", t("badge.later")) : null,
      broken.has(item.position) ? badge("broken", t("badge.broken")) : null,
    ];
    const classes = [read ? "read" : "", later ? "later" : "", broken.has(item.position) ? "broken" : ""].join(" ").trim();
    return {
      attrs: { class: classes || null, "data-position": item.position, "data-type": item.type,
               "data-late": String(Boolean(item.late_entry)) },
      cells: [
        String(item.position),
        el("span", {}, el("strong", {}, label("event", item.type)), el("br"), ...marks),
        moment(item.occurred_at),
        moment(item.recorded_at),
        names.name(item.agency),
        shown(item.actor),
        legalBasis(item.legal_basis),
        el("div", {}, details(item.type, item.payload, names),
          el("p", { class: "hash" }, `${t("col.hash")}: `, item.hash ?? "–")),
      ],
    };
  }));
  holder.append(node);
}

// ---- wiring -----------------------------------------------------------------------

async function onSignedIn(me) {
  if (me.role !== "auditor") {
    $("not-auditor").hidden = false;
    $("search").hidden = true;
    return;
  }
  names = await agencyNames();
  const caseId = caseIdFromPath();
  if (caseId) {
    await loadCase(caseId);
  } else {
    document.body.dataset.loaded = "true";
  }
}

function redraw() {
  if (!names) return;
  drawResults();
  if (shownNow.current) drawFacts();
  if (shownNow.replay) drawState();
  if (shownNow.chain) drawChain();
  if (shownNow.history) drawTimeline();
}

$("search-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const query = $("query").value.trim();
  if (!query) return;
  try {
    await search(query);
  } catch (error) {
    $("search-results").replaceChildren(el("p", { class: "error", role: "alert" }, error.describe()));
  }
});
$("asof-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  await showState();
});
$("asof-now").addEventListener("click", async () => {
  $("asof-input").value = "";
  await showState();
});

startPage({ titleKey: "title.audit", onSignedIn, onLanguage: redraw });
