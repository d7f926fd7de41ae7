// What the audit and inbox pages share: the texts (labels.json, one German and one
// English table), the token in the tab's session storage, calls to the JSON API,
// de-DE dates, and a few DOM helpers. No inline script or style anywhere, so the
// pages run under Content-Security-Policy: default-src 'self'.

const TOKEN_KEY = "hub-token";
const LANG_KEY = "hub-lang";
const USER_KEY = "hub-user";
const ERASED = "[erased]"; // what the API shows for a destroyed personal field

let texts = null;
let lang = sessionStorage.getItem(LANG_KEY) === "en" ? "en" : "de";

export async function loadTexts() {
  const response = await fetch("/assets/labels.json");
  texts = await response.json();
}

export function currentLang() {
  return lang;
}

/** The text for ``key`` in the chosen language (German when English lacks it). */
export function t(key) {
  return texts[lang][key] ?? texts.de[key] ?? key;
}

/** A value's label in a group ("kind", "state", "stage", …), else the value itself. */
export function label(group, value) {
  if (value === null || value === undefined || value === "") return "–";
  if (value === ERASED) return t("erased");
  return texts[lang][`${group}.${value}`] ?? texts.de[`${group}.${value}`] ?? String(value);
}

export function hasLabel(group, value) {
  return texts.de[`${group}.${value}`] !== undefined;
}

function locale() {
  return lang === "de" ? "de-DE" : "en-GB";
}

/** A moment (ISO 8601) as a date and time with seconds and the zone, e.g. "01.05.2026, 12:00:00 MESZ". */
export function moment(iso) {
  if (!iso) return "–";
  if (iso === ERASED) return t("erased");
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return String(iso);
  return when.toLocaleString(locale(), {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
  });
}

/** A moment as its day only, e.g. "15.05.2026". */
export function day(iso) {
  if (!iso) return "–";
  if (iso === ERASED) return t("erased");
  const date = /^\d{4}-\d{2}-\d{2}$/.test(iso) ? new Date(`${iso}T12:00:00`) : new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return date.toLocaleDateString(locale(), { year: "numeric", month: "2-digit", day: "2-digit" });
}

export function shown(value) {
  if (value === null || value === undefined || value === "") return "–";
  return value === ERASED ? t("erased") : String(value);
}

// ---- the DOM ----------------------------------------------------------------------

export const $ = (id) => document.getElementById(id);

/** ``el("td", {class: "x", dataset: {label: "…"}}, child, "text", …)`` */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function badge(kind, text) {
  return el("span", { class: `badge ${kind}` }, text);
}

/** Fill a table body: each row is a list of cells, each cell a value or node; every
 * cell carries its column's name (``data-label``) for the phone layout. */
export function fillTable(tbody, headers, rows, emptyText) {
  tbody.replaceChildren();
  if (!rows.length) {
    tbody.append(el("tr", {}, el("td", { class: "empty", colspan: headers.length }, emptyText ?? t("none"))));
    return;
  }
  for (const row of rows) {
    const cells = row.cells ?? row;
    const tr = el("tr", row.attrs ?? {});
    cells.forEach((value, i) => tr.append(el("td", { dataset: { label: headers[i] } }, value ?? "–")));
    tbody.append(tr);
  }
}

/** A table with a caption (or aria-label), a head and a body: returns [table, tbody]. */
export function table(headers, { caption, testid, cards = true, hideCaption = false } = {}) {
  const tbody = el("tbody");
  const node = el(
    "table",
    { class: cards ? "cards" : null, "data-testid": testid },
    caption ? el("caption", { class: hideCaption ? "sr-only" : null }, caption) : null,
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
    tbody,
  );
  return [node, tbody];
}

export function applyTexts(titleKey) {
  document.documentElement.lang = lang;
  document.querySelectorAll("[data-i18n]").forEach((node) => { node.textContent = t(node.dataset.i18n); });
  document.querySelectorAll("[data-i18n-label]").forEach((node) => { node.setAttribute("aria-label", t(node.dataset.i18nLabel)); });
  const switcher = $("lang");
  switcher.textContent = t("switchTo");
  switcher.setAttribute("aria-label", t("switchLabel"));
  switcher.setAttribute("lang", lang === "de" ? "en" : "de");
  document.title = t(titleKey);
}

// ---- the session and the API ------------------------------------------------------

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function claimedUser() {
  return sessionStorage.getItem(USER_KEY);
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** The refusal in the page's language, with the hub's own words beside it. */
  describe() {
    const known = texts.de[`error.${this.code}`] !== undefined;
    return known ? `${t(`error.${this.code}`)} (${this.message})` : `${t("error.generic")} ${this.message}`;
  }
}

/** Call the JSON API with the session's token: the parsed answer, its status on
 * ``.status`` of the thrown ApiError when refused. */
export async function api(path, { method = "GET", body, bearer } = {}) {
  const headers = { Authorization: `Bearer ${bearer ?? token()}` };
  const user = claimedUser();
  if (user) headers["X-Hub-User"] = user;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (error) {
    throw new ApiError(0, "network", t("error.network"));
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = data.error ?? {};
    throw new ApiError(response.status, error.code ?? "http_error", error.message ?? String(response.status));
  }
  return { data, status: response.status };
}

/** A UUID for a new message (crypto.randomUUID where the page is a secure context). */
export function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** One message an agency is about to send. Its ``message_id`` is chosen when the
 * form or button appears; the body is fixed at the first send, so a double click
 * (or a retry after a lost answer) sends the very same message, which the hub
 * records once and answers as a duplicate. After a refusal, ``renew`` starts a new
 * message for the corrected input. */
export class Draft {
  constructor(me) {
    this.me = me;
    this.renew();
  }

  renew() {
    this.messageId = newId();
    this.body = null;
  }

  async send(type, caseId, payload) {
    if (this.body === null) {
      this.body = {
        message_id: this.messageId,
        type,
        agency: this.me.agency_id,
        case_id: caseId,
        occurred_at: new Date().toISOString(),
        actor: this.me.user ?? claimedUser() ?? this.me.agency_id,
        payload,
      };
    }
    try {
      return await api("/v1/messages", { method: "POST", body: this.body });
    } catch (error) {
      if (error.status !== 0) this.renew(); // refused: the next attempt is a new message
      throw error;
    }
  }
}

/** The sign-in form, the language switch and the sign-out button of a page.
 * ``onSignedIn(me)`` runs with ``/v1/me`` once a token is known. */
export async function startPage({ titleKey, onSignedIn, onLanguage }) {
  await loadTexts();
  applyTexts(titleKey);
  const login = $("login");
  const app = $("app");
  const logout = $("logout");

  async function enter(bearer) {
    try {
      const { data } = await api("/v1/me", { bearer });
      return data;
    } catch (error) {
      return null;
    }
  }

  async function show(me) {
    login.hidden = true;
    app.hidden = false;
    logout.hidden = false;
    const who = $("who");
    if (who) who.textContent = `${t("signedInAs")}: ${me.name}${me.user || claimedUser() ? ` (${me.user ?? claimedUser()})` : ""}`;
    await onSignedIn(me);
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(USER_KEY);
    app.hidden = true;
    logout.hidden = true;
    login.hidden = false;
    $("login-error").textContent = message ?? "";
    $("token").focus();
  }

  login.addEventListener("submit", async (event) => {
    event.preventDefault();
    const typed = $("token").value.trim();
    const user = $("user") ? $("user").value.trim() : "";
    if (user) sessionStorage.setItem(USER_KEY, user);
    else sessionStorage.removeItem(USER_KEY);
    const me = await enter(typed);
    if (me === null) {
      sessionStorage.removeItem(USER_KEY);
      $("login-error").textContent = t("badToken");
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, typed);
    $("token").value = "";
    $("login-error").textContent = "";
    await show(me);
  });
  logout.addEventListener("click", () => signOut(""));
  $("lang").addEventListener("click", async () => {
    lang = lang === "de" ? "en" : "de";
    sessionStorage.setItem(LANG_KEY, lang);
    applyTexts(titleKey);
    if (!app.hidden && onLanguage) await onLanguage();
  });

  const known = token();
  if (known) {
    const me = await enter(known);
    if (me !== null) {
      await show(me);
      return;
    }
    signOut(t("badToken"));
    return;
  }
  $("token").focus();
}

/** The agencies' display names, fetched once per page. */
export async function agencyNames() {
  const { data } = await api("/v1/agencies");
  const names = new Map(data.items.map((a) => [a.agency_id, a]));
  return {
    name(id) {
      if (id === null || id === undefined) return "–";
      if (id === "auditor") return t("auditorAgency");
      return names.get(id)?.name ?? id;
    },
    all: data.items,
  };
}
