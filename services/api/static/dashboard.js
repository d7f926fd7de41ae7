// The dashboard page: reads /v1/dashboard with the token typed into the form (kept in
// this tab's sessionStorage), shows every figure in German (English on request), and
// exports each table as CSV. Served as a file, so the page needs no inline script.
"use strict";

// The page's texts: one German and one English table, same keys.
const TEXT = {
  de: {
    title: "Übergabe-Hub: Dashboard", logout: "Abmelden", signin: "Anmelden", token: "Zugangstoken",
    tokenHelp: "Token aus „hub agency add“ oder „hub token auditor“.", signinButton: "Anmelden",
    badToken: "Token ungültig.", failed: "Aktualisierung fehlgeschlagen", switchTo: "English",
    switchLabel: "Switch to English", figures: "Kennzahlen", filters: "Filter",
    programme: "Programm", site: "Standort", allProgrammes: "Alle Programme", allSites: "Alle Standorte",
    noSite: "ohne Standort", scopeLabel: "Zahlen für", everything: "alle Programme", updated: "Stand",
    casesTotal: "Fälle insgesamt", openHandovers: "offene Übergaben", overdueHandovers: "überfällige Übergaben",
    employedShare: "in Beschäftigung binnen 12 Monaten", rehabMet: "§ 14: fristgerecht entschieden",
    rehabMissed: "§ 14: verspätet entschieden", placesUsed: "Plätze belegt von Kapazität",
    placesTitle: "Plätze je Standort",
    placesNote: "Belegt: Teilnehmende, deren Zuweisung begonnen hat (aktiv, in Beschäftigung, Nachbetreuung). Laufend: alle nicht abgeschlossenen Fälle des Standorts.",
    casesTitle: "Fälle nach Phase", employedTitle: "Beschäftigung binnen 12 Monaten nach Zuweisungsbeginn",
    employmentDaysTitle: "Tage von der Zuweisung bis zur Beschäftigung", handoversTitle: "Übergaben nach Status",
    chartTitle: "Zeit vom Angebot bis zur Annahme, gemessen an der Annahmefrist",
    chartDesc: "Balken je Stellenpaar in Tagen; die Tabelle darunter enthält dieselben Werte.",
    legendMedian: "Median", legendP90: "90. Perzentil", legendDeadline: "Annahmefrist laut Regelwerk",
    openTitle: "Offene Übergaben je Stelle", overdueTitle: "Überfällige Übergaben",
    rehabTitle: "Reha-Entscheidungen nach § 14 SGB IX",
    rehabNote: "Fristgerecht: entschieden binnen drei Wochen nach Eingang (oder zwei Wochen nach einem Gutachten).",
    none: "keine", from: "Von", to: "An", kind: "Art", count: "Anzahl", agency: "Stelle", total: "gesamt",
    used: "belegt", capacity: "Kapazität", utilisation: "Auslastung", running: "laufend",
    assigned: "zugewiesen", employed: "beschäftigt", share: "Anteil", employments: "Beschäftigungen",
    medianDays: "Median (Tage)", medianHours: "Median (Std.)", p90Hours: "90. Perzentil (Std.)",
    deadlineDays: "Annahmefrist (Tage)", open: "offen", overdue: "davon überfällig", dueSince: "fällig seit",
    daysOverdue: "Tage überfällig", case: "Fall", met: "fristgerecht", missed: "verspätet",
    metShare: "Anteil fristgerecht", days: "Tage", deadline: "Frist", median: "Median", p90: "90. Perzentil",
    of: "von", csvOf: "Tabelle als CSV herunterladen:",
  },
  en: {
    title: "Handover hub: dashboard", logout: "Sign out", signin: "Sign in", token: "Access token",
    tokenHelp: "A token from “hub agency add” or “hub token auditor”.", signinButton: "Sign in",
    badToken: "Invalid token.", failed: "refresh failed", switchTo: "Deutsch",
    switchLabel: "Auf Deutsch umschalten", figures: "Key figures", filters: "Filters",
    programme: "Programme", site: "Site", allProgrammes: "All programmes", allSites: "All sites",
    noSite: "no site", scopeLabel: "Figures for", everything: "all programmes", updated: "As of",
    casesTotal: "cases in total", openHandovers: "open handovers", overdueHandovers: "overdue handovers",
    employedShare: "employed within 12 months", rehabMet: "§ 14: decided in time",
    rehabMissed: "§ 14: decided late", placesUsed: "places used of capacity",
    placesTitle: "Places per site",
    placesNote: "Used: participants whose assignment has begun (active, employed, aftercare). Running: every case of the site not closed.",
    casesTitle: "Cases by stage", employedTitle: "Employment within 12 months of the assignment's start",
    employmentDaysTitle: "Days from assignment to employment", handoversTitle: "Handovers by state",
    chartTitle: "Time from offer to acceptance against the accept deadline",
    chartDesc: "Bars per agency pair in days; the table below holds the same values.",
    legendMedian: "median", legendP90: "90th percentile", legendDeadline: "accept deadline by policy",
    openTitle: "Open handovers per agency", overdueTitle: "Overdue handovers",
    rehabTitle: "Rehabilitation decisions under § 14 SGB IX",
    rehabNote: "In time: decided within three weeks of receipt (or two weeks after an expert opinion).",
    none: "none", from: "From", to: "To", kind: "Kind", count: "Count", agency: "Agency", total: "total",
    used: "used", capacity: "capacity", utilisation: "utilisation", running: "running",
    assigned: "assigned", employed: "employed", share: "share", employments: "employments",
    medianDays: "median (days)", medianHours: "median (hours)", p90Hours: "90th percentile (hours)",
    deadlineDays: "accept deadline (days)", open: "open", overdue: "of which overdue", dueSince: "due since",
    daysOverdue: "days overdue", case: "Case", met: "in time", missed: "late",
    metShare: "share in time", days: "days", deadline: "deadline", median: "median", p90: "90th percentile",
    of: "of", csvOf: "Download the table as CSV:",
  },
};
// Labels of the hub's values (DOMAIN.md): handover kinds and states, case stages,
// closure outcomes, § 14 decisions and agency kinds.
const LABELS = {
  de: {
    kind: { assignment: "Zuweisung", discharge: "Entlassung", rehab_application: "Reha-Antrag",
            placement_support: "Vermittlungsunterstützung", return: "Rückgabe" },
    state: { offered: "angeboten", accepted: "angenommen", completed: "erledigt", declined: "abgelehnt",
             forwarded: "weitergeleitet", withdrawn: "zurückgezogen" },
    stage: { opened: "eröffnet", active: "aktiv", employed: "in Beschäftigung", aftercare: "Nachbetreuung",
             closed: "abgeschlossen" },
    outcome: { employed: "Beschäftigung", training: "Ausbildung", transferred: "übergeleitet",
               dropped_out: "abgebrochen", moved_away: "verzogen", incapacity: "volle Erwerbsminderung",
               deceased: "verstorben", other: "sonstiger Grund" },
    decision: { granted: "bewilligt", refused: "abgelehnt", partly_granted: "teilweise bewilligt" },
    agencyKind: { jobcenter: "Jobcenter", employment_agency: "Agentur für Arbeit",
                  psychiatric_clinic: "psychiatrische Klinik", rehabilitation_agency: "Rehabilitationsträger",
                  coaching_provider: "Durchführungsträger", integration_office: "Integrationsamt",
                  chamber: "Kammer" },
  },
  en: {
    kind: { assignment: "assignment", discharge: "discharge", rehab_application: "rehabilitation application",
            placement_support: "placement support", return: "return" },
    state: { offered: "offered", accepted: "accepted", completed: "completed", declined: "declined",
             forwarded: "forwarded", withdrawn: "withdrawn" },
    stage: { opened: "opened", active: "active", employed: "employed", aftercare: "aftercare", closed: "closed" },
    outcome: { employed: "employment", training: "vocational training", transferred: "transferred",
               dropped_out: "dropped out", moved_away: "moved away", incapacity: "full incapacity",
               deceased: "deceased", other: "other" },
    decision: { granted: "granted", refused: "refused", partly_granted: "partly granted" },
    agencyKind: { jobcenter: "Jobcenter", employment_agency: "employment agency",
                  psychiatric_clinic: "psychiatric clinic", rehabilitation_agency: "rehabilitation agency",
                  coaching_provider: "coaching provider", integration_office: "integration office",
                  chamber: "chamber" },
  },
};
const LOCALES = { de: "de-DE", en: "en-GB" };
const TIME_ZONE = "Europe/Berlin"; // the agencies' clock, whatever the browser's zone
const STAGES = ["opened", "active", "employed", "aftercare", "closed"];
const STATES = ["offered", "accepted", "completed", "declined", "forwarded", "withdrawn"];
const REFRESH_MS = 30000;

let lang = sessionStorage.getItem("hub-lang") || "de";
let timer = null;
let data = null; // the last answer of /v1/dashboard
let filter = readFilter();
const tables = {}; // name -> {columns, rows}: what is shown, for the CSV export

const $ = (id) => document.getElementById(id);
const label = (group, value) => LABELS[lang][group][value] ?? value;
// A text, or a value's label by "group.value" (e.g. "stage.opened").
function t(key) {
  if (key in TEXT[lang]) { return TEXT[lang][key]; }
  const [group, value] = key.split(".");
  return value !== undefined && LABELS[lang][group] ? label(group, value) : key;
}

// ---- formatting (de-DE by default) ----
function number(value, digits = 2) {
  return new Intl.NumberFormat(LOCALES[lang], { maximumFractionDigits: digits }).format(value);
}
function percent(share) {
  return new Intl.NumberFormat(LOCALES[lang], { style: "percent", maximumFractionDigits: 1 }).format(share);
}
function dateTime(iso) {
  return new Intl.DateTimeFormat(LOCALES[lang], { dateStyle: "medium", timeStyle: "short", timeZone: TIME_ZONE })
    .format(new Date(iso));
}
function date(iso) {
  return new Intl.DateTimeFormat(LOCALES[lang], { dateStyle: "medium", timeZone: TIME_ZONE }).format(new Date(iso));
}
function agencyName(id) {
  const found = (data?.agencies || []).find((a) => a.agency_id === id);
  return found ? found.name : id;
}
function siteName(site) { return site === "-" || site == null ? t("noSite") : site; }
function sum(rows, field) { return rows.reduce((total, row) => total + row[field], 0); }

// ---- the filter: in the address (so a report can be linked), never the token ----
function readFilter() {
  const query = new URLSearchParams(location.search);
  return { programme: query.get("programme") || "", site: query.get("site") || "" };
}
// `path` with the filter as its query (the page's address and the API's the same).
function withFilter(path) {
  const query = new URLSearchParams();
  if (filter.programme) { query.set("programme", filter.programme); }
  if (filter.site) { query.set("site", filter.site); }
  const search = query.toString();
  return path + (search ? "?" + search : "");
}
function writeFilter() { history.replaceState(null, "", withFilter(location.pathname)); }
function apiUrl() { return withFilter("/v1/dashboard"); }

function option(value, text, selected) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = text;
  element.selected = selected;
  return element;
}
function renderFilters() {
  const sites = data.sites || [];
  const programmes = [...new Set(sites.map((s) => s.programme))];
  if (filter.programme && !programmes.includes(filter.programme)) { programmes.push(filter.programme); }
  $("f-programme").replaceChildren(
    option("", t("allProgrammes"), !filter.programme),
    ...programmes.map((p) => option(p, p, p === filter.programme)),
  );
  const shown = sites.filter((s) => !filter.programme || s.programme === filter.programme);
  if (filter.site && !shown.some((s) => s.site === filter.site)) {
    shown.push({ programme: filter.programme, site: filter.site });
  }
  $("f-site").replaceChildren(
    option("", t("allSites"), !filter.site),
    ...shown.map((s) => option(s.site, filter.programme ? siteName(s.site) : `${siteName(s.site)} (${s.programme})`,
      s.site === filter.site)),
  );
  const parts = [filter.programme || t("everything")];
  if (filter.site) { parts.push(siteName(filter.site)); }
  $("scope").textContent = parts.join(", ");
}

// ---- tables: each kept as {columns, rows} for its CSV ----
// A column: [text key, numeric?]. A cell: a string, or {text, csv, className, title}.
function renderTable(name, testId, allColumns, allRows) {
  // With one programme chosen its column says nothing (and costs a phone's width).
  const drop = data.filter?.programme ? allColumns.findIndex(([key]) => key === "programme") : -1;
  const columns = allColumns.filter((_, i) => i !== drop);
  const rows = allRows.map((cells) => cells.filter((_, i) => i !== drop));
  tables[name] = { columns, rows };
  const table = document.querySelector(`[data-testid='${testId}']`);
  const head = document.createElement("thead");
  const headRow = document.createElement("tr");
  columns.forEach(([key, numeric]) => {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = t(key);
    if (numeric) { th.className = "num"; }
    headRow.append(th);
  });
  head.append(headRow);
  const body = document.createElement("tbody");
  if (!rows.length) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = columns.length;
    td.textContent = t("none");
    tr.append(td);
    body.append(tr);
  }
  rows.forEach((cells) => {
    const tr = document.createElement("tr");
    cells.forEach((cell, i) => {
      const td = document.createElement("td");
      const c = typeof cell === "object" && cell !== null ? cell : { text: String(cell) };
      td.textContent = c.text;
      const classes = [columns[i][1] ? "num" : "", c.className || ""].filter(Boolean);
      if (classes.length) { td.className = classes.join(" "); }
      if (c.title) { td.title = c.title; }
      tr.append(td);
    });
    body.append(tr);
  });
  table.replaceChildren(head, body);
}

// The rows of `rows` grouped by the fields `keys` (each group: its first row's fields
// and `counts`, the sum of `count` per value of the field `by`), in first-seen order.
function grouped(rows, keys, by) {
  const groups = new Map();
  rows.forEach((r) => {
    const key = JSON.stringify(keys.map((k) => r[k]));
    const row = groups.get(key) || { ...r, counts: {} };
    row.counts[r[by]] = (row.counts[r[by]] || 0) + r.count;
    groups.set(key, row);
  });
  return [...groups.values()];
}
// A grouped row's cells: a number per value of `values`, then their total.
function countCells(row, values) {
  return [...values.map((v) => number(row.counts[v] || 0)),
    number(Object.values(row.counts).reduce((a, b) => a + b, 0))];
}

function deadlineOf(pair) {
  return (data.offer_to_accept_deadlines || []).find(
    (d) => d.from_agency === pair.from_agency && d.to_agency === pair.to_agency) || { kinds: [], accept_days: null };
}

function renderCards(sites) {
  const byStage = {};
  data.cases_by_stage.forEach((r) => { byStage[r.stage] = (byStage[r.stage] || 0) + r.count; });
  $("cases-total").textContent = number(sum(data.cases_by_stage, "count"));
  STAGES.forEach((s) => { $("stage-" + s).textContent = number(byStage[s] || 0); });
  $("open-handovers").textContent = number(sum(data.open_offers, "open"));
  const overdue = sum(data.open_offers, "overdue");
  $("overdue-handovers").textContent = number(overdue);
  $("overdue-card").classList.toggle("warn", overdue > 0); // red only when something is overdue
  const assigned = sum(data.employed_within_12_months, "assigned");
  $("employed-share").textContent = assigned
    ? percent(sum(data.employed_within_12_months, "employed") / assigned) : "–";
  $("rehab-met").textContent = number(sum(data.rehab_decisions, "met"));
  const missed = sum(data.rehab_decisions, "missed");
  $("rehab-missed").textContent = number(missed);
  $("rehab-missed-card").classList.toggle("warn", missed > 0);
  // Against the sites whose capacity is known; without any, the places used alone.
  const known = sites.filter((p) => p.capacity != null);
  $("places-used").textContent = known.length
    ? `${number(sum(known, "used"))} / ${number(sum(known, "capacity"))}` : number(sum(sites, "used"));
}

function render() {
  if (!data) { return; }
  renderFilters();
  renderCards(data.places);
  const bySite = grouped(data.cases_by_stage, ["programme", "site"], "stage");
  const running = new Map(bySite.map((r) => [JSON.stringify([r.programme, r.site]),
    Object.entries(r.counts).reduce((n, [stage, count]) => (stage === "closed" ? n : n + count), 0)]));
  renderTable("places", "places-table",
    [["programme"], ["site"], ["used", true], ["capacity", true], ["utilisation", true], ["running", true]],
    data.places.map((p) => [p.programme, siteName(p.site), number(p.used),
      p.capacity == null ? "–" : number(p.capacity),
      p.capacity ? percent(p.used / p.capacity) : "–",
      number(running.get(JSON.stringify([p.programme, p.site])) || 0)]));
  renderTable("cases", "cases-table",
    [["programme"], ["site"], ...STAGES.map((s) => ["stage." + s, true]), ["total", true]],
    bySite.map((r) => [r.programme, siteName(r.site), ...countCells(r, STAGES)]));
  renderTable("employed", "employed-table",
    [["programme"], ["site"], ["assigned", true], ["employed", true], ["share", true]],
    data.employed_within_12_months.map((r) => [r.programme, siteName(r.site), number(r.assigned),
      number(r.employed), percent(r.share)]));
  renderTable("employmentDays", "employment-days-table",
    [["programme"], ["site"], ["employments", true], ["medianDays", true]],
    data.assignment_to_employment.map((r) => [r.programme, siteName(r.site), number(r.count), number(r.median_days, 1)]));
  renderTable("handovers", "handovers-table",
    [["programme"], ["from"], ["to"], ["kind"], ...STATES.map((s) => ["state." + s, true]), ["total", true]],
    grouped(data.handovers_by_state, ["programme", "from_agency", "to_agency", "kind"], "state").map((r) => [
      r.programme, agencyName(r.from_agency), agencyName(r.to_agency), label("kind", r.kind),
      ...countCells(r, STATES)]));
  drawChart();
  renderTable("offers", "offer-table",
    [["from"], ["to"], ["kind"], ["count", true], ["medianHours", true], ["p90Hours", true], ["deadlineDays", true]],
    data.offer_to_accept.map((p) => {
      const deadline = deadlineOf(p);
      return [agencyName(p.from_agency), agencyName(p.to_agency), deadline.kinds.map((k) => label("kind", k)).join(", "),
        number(p.count), number(p.median_hours), number(p.p90_hours),
        deadline.accept_days == null ? "–" : number(deadline.accept_days)];
    }));
  renderTable("open", "open-table", [["agency"], ["open", true], ["overdue", true]],
    data.open_offers.map((r) => [agencyName(r.agency), number(r.open),
      { text: number(r.overdue), className: r.overdue > 0 ? "late" : "" }]));
  renderTable("overdue", "overdue-table",
    // Most overdue first, and what a phone shows first: how late, at whom, what.
    [["daysOverdue", true], ["agency"], ["kind"], ["dueSince"], ["from"], ["programme"], ["site"], ["case"]],
    data.overdue_handovers.map((h) => [{ text: number(h.days_overdue), className: "late" },
      agencyName(h.agency), label("kind", h.kind), { text: date(h.due_at), title: dateTime(h.due_at) },
      agencyName(h.from_agency), h.programme ?? "–", siteName(h.site),
      { text: h.case_id.slice(0, 8), csv: h.case_id, title: h.case_id }]));
  renderTable("rehab", "rehab-table", [["agency"], ["met", true], ["missed", true], ["metShare", true]],
    data.rehab_decisions.map((r) => [agencyName(r.agency), number(r.met),
      { text: number(r.missed), className: r.missed > 0 ? "late" : "" },
      r.met + r.missed ? percent(r.met / (r.met + r.missed)) : "–"]));
  $("generated").dateTime = data.generated_at;
  $("generated").textContent = dateTime(data.generated_at);
  document.querySelectorAll(".csv").forEach((button) => {
    const heading = button.closest("section").querySelector("h2").textContent;
    button.setAttribute("aria-label", `${t("csvOf")} ${heading}`);
  });
  document.body.dataset.loaded = "true";
}

// ---- the chart: bars in days (median inside the 90th percentile) against the deadline ----
function drawChart() {
  const chart = $("chart");
  const pairs = data.offer_to_accept;
  chart.replaceChildren();
  if (!pairs.length) { chart.textContent = t("none"); return; }
  const days = (hours) => hours / 24;
  const max = Math.max(...pairs.map((p) => Math.max(days(p.p90_hours), deadlineOf(p).accept_days || 0)), 1) * 1.08;
  const at = (value) => `${Math.min(100, (value / max) * 100)}%`;
  pairs.forEach((p) => {
    const deadline = deadlineOf(p);
    const row = document.createElement("div");
    row.className = "chart-row";
    const name = document.createElement("div");
    name.className = "chart-label";
    name.textContent = `${agencyName(p.from_agency)} → ${agencyName(p.to_agency)} `;
    const kinds = document.createElement("span");
    kinds.className = "chart-kind";
    kinds.textContent = deadline.kinds.length ? `(${deadline.kinds.map((k) => label("kind", k)).join(", ")})` : "";
    name.append(kinds);
    const track = document.createElement("div");
    track.className = "chart-track";
    const p90 = document.createElement("div");
    p90.className = "chart-bar p90";
    p90.style.width = at(days(p.p90_hours)); // CSSOM, which a strict style-src allows
    const median = document.createElement("div");
    median.className = "chart-bar median";
    median.style.width = at(days(p.median_hours));
    track.append(p90, median);
    const values = document.createElement("div");
    values.className = "chart-values";
    const parts = [`${t("median")} ${number(days(p.median_hours), 1)} ${t("days")}`,
      `${t("p90")} ${number(days(p.p90_hours), 1)} ${t("days")}`];
    if (deadline.accept_days != null) {
      const line = document.createElement("div");
      line.className = "chart-deadline";
      line.style.left = at(deadline.accept_days);
      track.append(line);
      parts.push(`${t("deadline")} ${number(deadline.accept_days)} ${t("days")}`);
    }
    values.textContent = parts.join(" · ");
    row.append(name, track, values);
    chart.append(row);
  });
}

// ---- CSV: what the table shows, in the page's language (German: ";" and decimal comma) ----
function csvCell(value) {
  let text = String(value);
  if (/^[=+\-@\t\r]/.test(text) && !/^-?\d/.test(text)) { text = "'" + text; } // no formulas in a sheet
  return /[";,\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}
function csvOf(name) {
  const { columns, rows } = tables[name];
  const separator = lang === "de" ? ";" : ",";
  const lines = [columns.map(([key]) => csvCell(t(key))).join(separator)];
  rows.forEach((cells) => {
    lines.push(cells.map((c) => csvCell(typeof c === "object" && c !== null ? (c.csv ?? c.text) : c)).join(separator));
  });
  return "\ufeff" + lines.join("\r\n") + "\r\n";
}
function download(name) {
  const blob = new Blob([csvOf(name)], { type: "text/csv;charset=utf-8" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  const scope = [filter.programme, filter.site].filter(Boolean).join("-").replace(/[^\p{L}\p{N}-]+/gu, "_");
  link.download = `dashboard-${name}${scope ? "-" + scope : ""}-${data.generated_at.slice(0, 10)}.csv`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

// ---- language ----
function applyLanguage() {
  document.documentElement.lang = lang;
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  document.querySelectorAll("[data-i18n-label]").forEach((el) => { el.setAttribute("aria-label", t(el.dataset.i18nLabel)); });
  $("lang").textContent = t("switchTo");
  $("lang").setAttribute("aria-label", t("switchLabel"));
  document.title = t("title");
  render();
}
// ---- loading ----
async function refresh() {
  const token = sessionStorage.getItem("hub-token");
  if (!token) { return; }
  try {
    const response = await fetch(apiUrl(), { headers: { Authorization: "Bearer " + token } });
    if (response.status === 401) { signOut(t("badToken")); return; }
    if (!response.ok) { throw new Error(String(response.status)); }
    data = await response.json();
    render();
    $("status").textContent = "";
  } catch (error) {
    $("status").textContent = "(" + t("failed") + ")";
  }
}

function showBoard() {
  $("login").hidden = true; $("board").hidden = false; $("logout").hidden = false;
  refresh();
  clearInterval(timer);
  timer = setInterval(refresh, REFRESH_MS);
}

function signOut(message) {
  sessionStorage.removeItem("hub-token");
  clearInterval(timer);
  data = null;
  delete document.body.dataset.loaded;
  $("board").hidden = true; $("logout").hidden = true; $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").focus();
}

function start() {
  $("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    const response = await fetch("/v1/dashboard", { headers: { Authorization: "Bearer " + token } });
    if (!response.ok) { $("login-error").textContent = t("badToken"); return; }
    sessionStorage.setItem("hub-token", token);
    $("token").value = "";
    $("login-error").textContent = "";
    showBoard();
  });
  $("logout").addEventListener("click", () => signOut(""));
  $("lang").addEventListener("click", () => {
    lang = lang === "de" ? "en" : "de";
    sessionStorage.setItem("hub-lang", lang);
    applyLanguage();
  });
  $("f-programme").addEventListener("change", (event) => {
    filter = { programme: event.target.value, site: "" };
    writeFilter();
    delete document.body.dataset.loaded;
    refresh();
  });
  $("f-site").addEventListener("change", (event) => {
    filter = { ...filter, site: event.target.value };
    writeFilter();
    delete document.body.dataset.loaded;
    refresh();
  });
  document.querySelectorAll(".csv").forEach((button) => {
    button.addEventListener("click", () => download(button.dataset.table));
  });
  applyLanguage();
  if (sessionStorage.getItem("hub-token")) { showBoard(); } else { $("token").focus(); }
}

start();
