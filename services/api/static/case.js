// /inbox/cases/{id}: the case as the disclosure rules let this agency see it
// (GET /v1/cases/{id}: categories it may not see are absent, not hidden here), its
// handovers with the actions the rules allow, and a note form.
import { $, Draft, agencyNames, api, day, el, fillTable, label, moment, shown, startPage, t, table } from "./common.js";
import { handoverActions, say } from "./actions.js";

const CATEGORIES = ["notes", "plan", "assessment", "employment_history", "benefits", "health", "contact", "identity"];
let me = null;
let names = null;
let noteDraft = null;
const shownNow = { view: null, actions: new Map() };

function caseId() {
  const match = /^\/inbox\/cases\/([^/]+)$/.exec(window.location.pathname);
  return match ? decodeURIComponent(match[1]) : "";
}

async function load() {
  const id = caseId();
  const [view, actions] = await Promise.all([
    api(`/v1/cases/${id}`).then((r) => r.data),
    api(`/v1/cases/${id}/actions`).then((r) => r.data),
  ]);
  shownNow.view = view;
  shownNow.actions = new Map(actions.items.map((item) => [item.handover_id, item]));
  $("case").hidden = false;
  draw();
  document.body.dataset.loaded = "true";
}

function facts(rows) {
  const list = el("dl", { class: "facts" });
  for (const [term, value, testid] of rows) list.append(el("dt", {}, term), el("dd", { "data-testid": testid }, value));
  return list;
}

function section(title, ...content) {
  return el("div", { class: "panel" }, el("h3", {}, title), ...content);
}

function draw() {
  const v = shownNow.view;
  $("case-title").textContent = `${t("case")} ${v.participant.pseudonym}`;
  $("case-facts").replaceWith(Object.assign(facts([
    [t("caseId"), el("code", {}, v.case_id)],
    [t("programme"), shown(v.programme)],
    [t("site"), shown(v.site)],
    [t("stage"), label("stage", v.stage), "case-stage"],
    [t("outcome"), label("outcome", v.outcome)],
    [t("lead"), names.name(v.lead_agency), "case-lead"],
    [t("agencies"), v.agencies.map((a) => names.name(a)).join(", ")],
    [t("coach"), shown(v.coach)],
    [t("openedAt"), moment(v.opened_at)],
    [t("closedAt"), moment(v.closed_at)],
    [t("shownCategories"), v.categories_shown.map((c) => label("category", c)).join(", ") || t("none")],
  ]), { id: "case-facts" }));

  const person = Object.entries(v.participant).filter(([key]) => !["pseudonym", "erased"].includes(key));
  $("participant").replaceChildren(person.length
    ? facts(person.map(([key, value]) => [label("field", key), key === "birth_date" ? day(value) : shown(value), `participant-${key}`]))
    : el("p", { class: "muted" }, t("participantNone")));

  const hHeaders = [t("kind"), t("from"), t("to"), t("stateCol"), t("categories"), t("offeredAt"), t("due"), t("actions")];
  const [hTable, hBody] = table(hHeaders, { caption: t("handovers"), testid: "case-handovers", hideCaption: true });
  fillTable(hBody, hHeaders, v.handovers.map((h) => ({
    attrs: { "data-handover-id": h.handover_id, "data-state": h.state },
    cells: [label("kind", h.kind), names.name(h.from_agency), names.name(h.to_agency), label("state", h.state),
            h.data_categories.map((c) => label("category", c)).join(", ") || "–", moment(h.offered_at),
            moment(h.decide_due_at ?? h.due_at),
            handoverActions({ me, names, caseId: v.case_id, handover: h, allowed: shownNow.actions.get(h.handover_id),
                              onDone: load })],
  })));
  $("handovers").replaceChildren(hTable);

  const nHeaders = [t("at"), t("author"), t("noteCategory"), t("noteText")];
  const [nTable, nBody] = table(nHeaders, { caption: t("notes"), testid: "case-notes", hideCaption: true });
  fillTable(nBody, nHeaders, v.notes.map((n) => [moment(n.at), names.name(n.agency), label("category", n.category), shown(n.text)]));
  $("notes").replaceChildren(nTable);

  const more = [];
  const cHeaders = [t("consentId"), t("categories"), t("source"), t("recipients"), t("validFrom"), t("validUntil"), t("revokedAt")];
  const [cTable, cBody] = table(cHeaders, { caption: t("consents") });
  fillTable(cBody, cHeaders, v.consents.map((c) => [c.consent_id, c.categories.map((x) => label("category", x)).join(", "),
    names.name(c.source_agency), c.recipients.map((a) => names.name(a)).join(", "), moment(c.valid_from),
    moment(c.valid_until), moment(c.revoked_at)]));
  more.push(el("div", { class: "panel" }, cTable));
  const aHeaders = [t("kind"), t("at"), t("stateCol")];
  const [aTable, aBody] = table(aHeaders, { caption: t("appointments") });
  fillTable(aBody, aHeaders, v.appointments.map((a) => [label("appointment", a.kind), moment(a.at), label("appointmentState", a.state)]));
  more.push(el("div", { class: "panel" }, aTable));
  if (v.plan) {
    more.push(section(t("plan"), facts([
      [t("goals"), v.plan.goals.map(shown).join("; ")],
      [t("modules"), v.plan.modules.map(shown).join("; ")],
    ])));
  }
  if (v.measures.length) {
    const mHeaders = [t("title"), t("started"), t("ended"), t("result")];
    const [mTable, mBody] = table(mHeaders, { caption: t("measures") });
    fillTable(mBody, mHeaders, v.measures.map((m) => [shown(m.title), moment(m.started_at), moment(m.ended_at), shown(m.result)]));
    more.push(el("div", { class: "panel" }, mTable));
  }
  if (v.employment) {
    more.push(section(t("employment"), facts([
      [t("employer"), shown(v.employment.employer)],
      [t("kind"), label("employmentKind", v.employment.kind)],
      [t("startDate"), day(v.employment.start_date)],
    ])));
  }
  $("more").replaceChildren(...more);

  const select = $("note-category");
  const chosen = select.value || "notes";
  select.replaceChildren(...CATEGORIES.map((c) => el("option", { value: c, selected: c === chosen }, label("category", c))));
  if (noteDraft === null) noteDraft = new Draft(me);
  $("note-form").dataset.messageId = noteDraft.messageId;
}

async function saveNote(event) {
  event.preventDefault();
  const text = $("note-text").value.trim();
  if (!text) {
    $("note-text").setAttribute("aria-invalid", "true");
    $("note-error").textContent = t("noteRequired");
    $("note-text").focus();
    return;
  }
  $("note-text").removeAttribute("aria-invalid");
  $("note-error").textContent = "";
  try {
    const { data } = await noteDraft.send("note.added", caseId(), { text, category: $("note-category").value });
    say(`${t("done.note")}${data.duplicate ? ` ${t("duplicate")}` : ""}`);
    $("note-text").value = "";
    noteDraft = new Draft(me); // the next note is a new message
    await load();
  } catch (error) {
    $("note-error").textContent = `${t("failed")} ${error.describe()}`;
  }
}

async function onSignedIn(who) {
  me = who;
  if (me.role !== "agency") {
    $("not-agency").hidden = false;
    document.body.dataset.loaded = "true";
    return;
  }
  names = await agencyNames();
  try {
    await load();
  } catch (error) {
    $("case-error").textContent = error.status === 403 || error.status === 404 || error.status === 422
      ? t("unknownCase")
      : error.describe();
    document.body.dataset.loaded = "true";
  }
}

$("note-form").setAttribute("novalidate", "");
$("note-form").addEventListener("submit", saveNote);
startPage({ titleKey: "title.case", onSignedIn, onLanguage: () => { if (shownNow.view) draw(); } });
