// How an event's payload and its legal basis read on a page: every kind, state,
// category and outcome by its label, agencies by their display names, dates in the
// page's language, erased fields as erased.
import { day, el, label, moment, shown, t } from "./common.js";

const MOMENTS = new Set(["due_at", "decide_due_at", "valid_from", "valid_until", "at", "until", "decided_at"]);
const DAYS = new Set(["start_date", "birth_date"]);
const AGENCIES = new Set(["to_agency", "source_agency", "from_agency"]);
const IDS = new Set(["handover_id", "new_handover_id", "appointment_id", "measure_id", "case_id"]);
// What "kind" and "outcome" mean depends on the event.
const KIND_GROUP = {
  AppointmentScheduled: "appointment",
  EmploymentStarted: "employmentKind",
  HandoverOffered: "kind",
  HandoverForwarded: "kind",
};
const OUTCOME_GROUP = { RehabDecided: "rehab", CaseClosed: "outcome" };

export function legalBasis(basis) {
  if (!basis) return "–";
  return basis
    .split(",")
    .map((part) => (part.startsWith("consent:") ? `${t("basis.consent")} ${part.slice(8)}` : label("basis", part)))
    .join("; ");
}

function value(type, key, raw, names) {
  if (Array.isArray(raw)) {
    if (key === "categories" || key === "data_categories") return raw.map((c) => label("category", c)).join(", ");
    if (key === "recipients") return raw.map((a) => names.name(a)).join(", ");
    if (key === "legal_basis") return legalBasis(raw.join(","));
    return raw.map((item) => shown(item)).join("; ");
  }
  if (typeof raw === "boolean") return raw ? t("yes") : t("no");
  if (AGENCIES.has(key)) return names.name(raw);
  if (MOMENTS.has(key)) return moment(raw);
  if (DAYS.has(key)) return day(raw);
  if (IDS.has(key)) return el("code", { title: raw }, String(raw).slice(0, 8));
  if (key === "kind" && KIND_GROUP[type]) return label(KIND_GROUP[type], raw);
  if (key === "outcome") return label(OUTCOME_GROUP[type] ?? "outcome", raw);
  if (key === "category") return label("category", raw);
  if (key === "scope") return label("scope", raw);
  if (key === "role") return label("role", raw);
  if (key === "priority") return label("priority", raw);
  if (key === "target" && type === "CaseClosed") return names.name(raw);
  return shown(raw);
}

/** The payload as a list of "label: value" lines (empty fields left out). */
export function details(type, payload, names) {
  const list = el("ul", { class: "details" });
  const add = (key, rendered) => {
    list.append(el("li", {}, el("span", { class: "key" }, `${label("field", key)}: `), rendered));
  };
  for (const [key, raw] of Object.entries(payload ?? {})) {
    if (raw === null || raw === undefined || (Array.isArray(raw) && raw.length === 0)) continue;
    if (type === "CaseRead" && key === "case_id") continue;
    if (raw && typeof raw === "object" && !Array.isArray(raw)) {
      for (const [inner, innerValue] of Object.entries(raw)) {
        if (innerValue !== null && innerValue !== undefined) add(inner, value(type, inner, innerValue, names));
      }
      continue;
    }
    add(key, value(type, key, raw, names));
  }
  return list;
}
