// The dashboard's code (a file of its own: the page's CSP allows no inline script).
"use strict";
const TEXT = {
  de: { title: "Übergabe-Hub: Dashboard", logout: "Abmelden", signin: "Anmelden", token: "Zugangstoken",
        tokenHelp: "Token aus „hub agency add“ oder „hub token auditor“.", signinButton: "Anmelden",
        updated: "Stand", casesTotal: "Fälle insgesamt", opened: "eröffnet", active: "aktiv",
        employed: "in Beschäftigung", aftercare: "Nachbetreuung", closed: "abgeschlossen",
        openHandovers: "offene Übergaben", overdueHandovers: "überfällige Übergaben",
        chartTitle: "Zeit vom Angebot bis zur Annahme (Stunden) je Stellenpaar",
        chartDesc: "Dunkler Balken: Median, heller Balken: 90. Perzentil.", from: "Von", to: "An",
        count: "Anzahl", overdueTitle: "Überfällige Übergaben", agency: "Stelle", kind: "Art",
        due: "Fällig seit", case: "Fall", placesTitle: "Belegte Plätze je Standort", programme: "Programm",
        site: "Standort", used: "Belegt", capacity: "Kapazität", none: "keine", badToken: "Token ungültig.",
        failed: "Aktualisierung fehlgeschlagen", switchTo: "English", switchLabel: "Switch to English", figures: "Kennzahlen" },
  en: { title: "Handover hub: dashboard", logout: "Sign out", signin: "Sign in", token: "Access token",
        tokenHelp: "A token from “hub agency add” or “hub token auditor”.", signinButton: "Sign in",
        updated: "As of", casesTotal: "cases in total", opened: "opened", active: "active",
        employed: "employed", aftercare: "aftercare", closed: "closed",
        openHandovers: "open handovers", overdueHandovers: "overdue handovers",
        chartTitle: "Time from offer to acceptance (hours) per agency pair",
        chartDesc: "Dark bar: median, light bar: 90th percentile.", from: "From", to: "To",
        count: "Count", overdueTitle: "Overdue handovers", agency: "Agency", kind: "Kind",
        due: "Due since", case: "Case", placesTitle: "Places used per site", programme: "Programme",
        site: "Site", used: "Used", capacity: "Capacity", none: "none", badToken: "Invalid token.",
        failed: "refresh failed", switchTo: "Deutsch", switchLabel: "Auf Deutsch umschalten", figures: "Key figures" },
};
let lang = sessionStorage.getItem("hub-lang") || "de";
let timer = null;
const $ = (id) => document.getElementById(id);
const t = (key) => TEXT[lang][key] || key;

function applyLanguage() {
  document.documentElement.lang = lang;
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  document.querySelectorAll("[data-i18n-label]").forEach((el) => { el.setAttribute("aria-label", t(el.dataset.i18nLabel)); });
  $("lang").textContent = t("switchTo");
  $("lang").setAttribute("aria-label", t("switchLabel"));
  document.title = t("title");
}

function cell(text) { const td = document.createElement("td"); td.textContent = text ?? "–"; return td; }
function fillRows(tbody, rows) {
  tbody.replaceChildren();
  if (!rows.length) { const tr = document.createElement("tr"); const td = cell(t("none")); td.colSpan = 5; tr.append(td); tbody.append(tr); return; }
  rows.forEach((values) => { const tr = document.createElement("tr"); values.forEach((v) => tr.append(cell(v))); tbody.append(tr); });
}

function drawChart(pairs) {
  const chart = $("chart");
  chart.replaceChildren();
  if (!pairs.length) { chart.textContent = t("none"); return; }
  const ns = "http://www.w3.org/2000/svg", rowH = 34, left = 300, width = 760, valueRoom = 120;
  const max = Math.max(...pairs.map((p) => p.p90_hours), 1);
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${pairs.length * rowH + 10}`);
  svg.setAttribute("width", "100%");
  pairs.forEach((p, i) => {
    const y = i * rowH + 5, scale = (width - left - valueRoom) / max;
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", 0); label.setAttribute("y", y + 18);
    const pair = `${p.from_agency} → ${p.to_agency}`;
    label.textContent = pair.length > 38 ? pair.slice(0, 37) + "…" : pair;
    const tip = document.createElementNS(ns, "title");
    tip.textContent = pair;
    label.append(tip);
    const p90 = document.createElementNS(ns, "rect");
    p90.setAttribute("class", "bar90"); p90.setAttribute("x", left); p90.setAttribute("y", y);
    p90.setAttribute("height", 24); p90.setAttribute("width", Math.max(p.p90_hours * scale, 1));
    const med = document.createElementNS(ns, "rect");
    med.setAttribute("class", "bar"); med.setAttribute("x", left); med.setAttribute("y", y + 6);
    med.setAttribute("height", 12); med.setAttribute("width", Math.max(p.median_hours * scale, 1));
    const value = document.createElementNS(ns, "text");
    value.setAttribute("x", left + Math.max(p.p90_hours * scale, 1) + 6); value.setAttribute("y", y + 18);
    value.textContent = `${p.median_hours} / ${p.p90_hours} h`;
    svg.append(label, p90, med, value);
  });
  chart.append(svg);
}

function render(data) {
  const byStage = {};
  data.cases_by_stage.forEach((r) => { byStage[r.stage] = (byStage[r.stage] || 0) + r.count; });
  $("cases-total").textContent = Object.values(byStage).reduce((a, b) => a + b, 0);
  ["opened", "active", "employed", "aftercare", "closed"].forEach((s) => { $("stage-" + s).textContent = byStage[s] || 0; });
  $("open-handovers").textContent = data.open_offers.reduce((a, r) => a + r.open, 0);
  $("overdue-handovers").textContent = data.open_offers.reduce((a, r) => a + r.overdue, 0);
  drawChart(data.offer_to_accept);
  fillRows($("offer-rows"), data.offer_to_accept.map((p) => [p.from_agency, p.to_agency, p.count, p.median_hours, p.p90_hours]));
  fillRows($("overdue-rows"), data.overdue_handovers.map((h) => [h.agency, h.from_agency, h.kind, h.due_at, h.case_id]));
  fillRows($("places-rows"), data.places.map((p) => [p.programme, p.site, p.used, p.capacity ?? "–"]));
  const when = new Date(data.generated_at);
  $("generated").dateTime = data.generated_at;
  $("generated").textContent = when.toLocaleString(lang === "de" ? "de-DE" : "en-GB");
  document.body.dataset.loaded = "true";
}

async function refresh() {
  const token = sessionStorage.getItem("hub-token");
  if (!token) { return; }
  try {
    const response = await fetch("/v1/dashboard", { headers: { Authorization: "Bearer " + token } });
    if (response.status === 401) { signOut(t("badToken")); return; }
    if (!response.ok) { throw new Error(response.status); }
    render(await response.json());
    $("status").textContent = "";
  } catch (error) {
    $("status").textContent = "(" + t("failed") + ")";
  }
}

function showBoard() {
  $("login").hidden = true; $("board").hidden = false; $("logout").hidden = false;
  refresh();
  clearInterval(timer);
  timer = setInterval(refresh, 30000);
}

function signOut(message) {
  sessionStorage.removeItem("hub-token");
  clearInterval(timer);
  $("board").hidden = true; $("logout").hidden = true; $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").focus();
}

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
  refresh();
});

applyLanguage();
if (sessionStorage.getItem("hub-token")) { showBoard(); } else { $("token").focus(); }
