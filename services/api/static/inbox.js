// /inbox: an agency's open handovers (due dates, overdue marked) with the actions
// the rules allow on each, and its caseload.
import { $, agencyNames, api, badge, el, fillTable, label, moment, shown, startPage, t, table } from "./common.js";
import { handoverActions, say } from "./actions.js";

let me = null;
let names = null;
const shownNow = { inbox: null, caseload: null, actions: new Map() };

async function load() {
  const agency = encodeURIComponent(me.agency_id);
  const [inbox, caseload] = await Promise.all([
    api(`/v1/agencies/${agency}/inbox`).then((r) => r.data),
    api(`/v1/agencies/${agency}/cases`).then((r) => r.data),
  ]);
  // What the rules allow now, per case of an open offer (a dry run on the hub).
  const cases = [...new Set(inbox.items.map((item) => item.case_id))];
  const answers = await Promise.all(cases.map((id) => api(`/v1/cases/${id}/actions`).then((r) => r.data)));
  shownNow.actions = new Map(answers.flatMap((a) => a.items.map((item) => [item.handover_id, item])));
  shownNow.inbox = inbox;
  shownNow.caseload = caseload;
  draw();
  document.body.dataset.loaded = "true";
}

async function afterAction() {
  await load();
  $("inbox-title").focus();
  // How many answers the page has acted on (a double click: two, one a duplicate).
  document.body.dataset.done = String(Number(document.body.dataset.done ?? 0) + 1);
}

function caseLink(caseId) {
  return el("a", { href: `/inbox/cases/${caseId}`, "aria-label": `${t("openCase")} ${caseId}` },
    el("code", {}, caseId.slice(0, 8)));
}

/** An accepted § 14 application stays in the inbox until it is decided. */
function stateOf(item) {
  const state = shownNow.actions.get(item.handover_id)?.state ?? "offered";
  return state === "accepted"
    ? el("span", {}, label("state", state), " – ", t("awaitsDecision"))
    : label("state", state);
}

function draw() {
  const inboxHeaders = [t("case"), t("kind"), t("from"), t("stateCol"), t("offeredAt"), t("due"), t("actions")];
  const [inboxTable, inboxBody] = table(inboxHeaders, { caption: t("inbox"), testid: "inbox-table", hideCaption: true });
  fillTable(inboxBody, inboxHeaders, shownNow.inbox.items.map((item) => ({
    attrs: { "data-handover-id": item.handover_id, "data-overdue": String(item.overdue) },
    cells: [
      caseLink(item.case_id),
      label("kind", item.kind),
      names.name(item.from_agency),
      stateOf(item),
      moment(item.offered_at),
      el("span", {}, moment(item.due_at), item.overdue ? [" ", badge("overdue", t("badge.overdue"))] : null),
      handoverActions({
        me, names, caseId: item.case_id, handover: item,
        allowed: shownNow.actions.get(item.handover_id), onDone: afterAction,
      }),
    ],
  })), t("inboxEmpty"));
  $("inbox-body").replaceChildren(inboxTable);
  $("inbox-title").textContent = `${t("inbox")} (${shownNow.inbox.items.length})`;
  $("inbox-title").setAttribute("tabindex", "-1");

  const loadHeaders = [t("case"), t("programme"), t("site"), t("stage"), t("lead"), t("coach"), t("nextDue"), t("lastActivity")];
  const [loadTable, loadBody] = table(loadHeaders, { caption: t("caseload"), testid: "caseload-table", hideCaption: true });
  fillTable(loadBody, loadHeaders, shownNow.caseload.items.map((c) => ({
    attrs: { "data-case-id": c.case_id },
    cells: [caseLink(c.case_id), shown(c.programme), shown(c.site), label("stage", c.stage), names.name(c.lead_agency),
            shown(c.coach), moment(c.next_due_at), moment(c.last_activity_at)],
  })), t("caseloadEmpty"));
  $("caseload-body").replaceChildren(loadTable);
}

async function onSignedIn(who) {
  me = who;
  if (me.role !== "agency") {
    $("not-agency").hidden = false;
    $("inbox").hidden = true;
    $("caseload").hidden = true;
    document.body.dataset.loaded = "true";
    return;
  }
  names = await agencyNames();
  try {
    await load();
  } catch (error) {
    say(error.describe(), true);
  }
}

startPage({ titleKey: "title.inbox", onSignedIn, onLanguage: () => { if (shownNow.inbox) draw(); } });
