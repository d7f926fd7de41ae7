// An agency's actions on a handover (inbox and case page): accept, decline with a
// reason, forward (only where /v1/cases/{id}/actions says the rules allow it) and
// complete. Each is one message through POST /v1/messages whose message_id is
// chosen when its button or form appears (``Draft``): a double click sends the same
// message twice, and the hub records it once.
import { $, Draft, el, label, moment, newId, t } from "./common.js";

const TYPES = {
  accept: "handover.accepted",
  decline: "handover.declined",
  forward: "handover.forwarded",
  complete: "handover.completed",
  decide: "rehab.decided",
};
const OUTCOMES = ["granted", "partly_granted", "refused"];

export function say(text, isError = false) {
  const status = $("status");
  status.className = isError ? "status error" : "status ok";
  status.textContent = text;
}

async function send(draft, verb, caseId, payload, onDone) {
  try {
    const { data } = await draft.send(TYPES[verb], caseId, payload);
    say(`${t(`done.${verb}`)}${data.duplicate ? ` ${t("duplicate")}` : ""}`);
    await onDone(verb, data);
    return true;
  } catch (error) {
    say(`${t("failed")} ${error.describe()}`, true);
    return false;
  }
}

/** A form with a reason (required for decline and forward: checked here, so the
 * message never leaves without one). ``extra`` are fields before the reason. */
function reasonForm(verb, handover, caseId, me, onDone, extra = [], payloadOf = () => ({}), required = true) {
  const draft = new Draft(me); // its message_id: chosen now, as the form opens
  const prefix = `${verb}-${handover.handover_id}`;
  const reason = el("textarea", { id: `${prefix}-reason`, name: "reason", maxlength: "500", required,
                                  "aria-required": required ? "true" : null, "aria-describedby": `${prefix}-error` });
  const error = el("p", { id: `${prefix}-error`, class: "error", role: "alert" });
  const form = el("form", { class: "action-form", novalidate: true, "data-testid": `${verb}-form`,
                            "aria-labelledby": `${prefix}-title`, "data-message-id": draft.messageId },
    el("h3", { id: `${prefix}-title` }, t(`${verb}Title`)),
    ...extra,
    el("div", { class: "field" }, el("label", { for: `${prefix}-reason` }, required ? t("reasonLabel") : t("reasonOptional")), reason),
    error,
    el("div", { class: "buttons" },
      el("button", { type: "submit", class: "primary" }, t("send")),
      el("button", { type: "button", class: "secondary", onclick: () => form.remove() }, t("cancel"))),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = reason.value.trim();
    if (!text && required) {
      reason.setAttribute("aria-invalid", "true");
      error.textContent = t("reasonRequired");
      reason.focus();
      return;
    }
    reason.removeAttribute("aria-invalid");
    error.textContent = "";
    const payload = { handover_id: handover.handover_id, ...payloadOf() };
    if (text) payload.reason = text;
    await send(draft, verb, caseId, payload, onDone);
  });
  return { form, reason };
}

/** The buttons (and their forms) for one handover, as ``allowed`` lists them. */
export function handoverActions({ me, names, caseId, handover, allowed, onDone }) {
  const box = el("div", { class: "actions", "data-testid": "handover-actions" });
  if (!allowed || !allowed.actions.length) {
    box.append("–");
    return box;
  }
  const buttons = el("div", { class: "buttons" });
  const panel = el("div");
  const kindText = handover.kind ? ` (${handover.handover_id.slice(0, 8)})` : "";
  for (const verb of allowed.actions) {
    if (verb === "accept" || verb === "complete") {
      const draft = new Draft(me); // chosen as the button appears: a double click is one message
      buttons.append(el("button", {
        type: "button", class: verb === "accept" ? "primary" : "secondary",
        "data-action": verb, "data-message-id": draft.messageId,
        "aria-label": `${t(`action.${verb}`)}${kindText}`,
        onclick: () => send(draft, verb, caseId, { handover_id: handover.handover_id }, onDone),
      }, t(`action.${verb}`)));
    } else if (verb === "decline") {
      buttons.append(el("button", {
        type: "button", class: "secondary danger", "data-action": "decline",
        "aria-label": `${t("action.decline")}${kindText}`,
        onclick: () => {
          const { form, reason } = reasonForm("decline", handover, caseId, me, onDone);
          panel.replaceChildren(form);
          reason.focus();
        },
      }, t("action.decline")));
    } else if (verb === "decide") {
      buttons.append(el("button", {
        type: "button", class: "primary", "data-action": "decide",
        "aria-label": `${t("action.decide")}${kindText}`,
        onclick: () => {
          const prefix = `decide-${handover.handover_id}`;
          const outcome = el("select", { id: `${prefix}-outcome`, name: "outcome" },
            OUTCOMES.map((o) => el("option", { value: o }, label("rehab", o))));
          const notice = el("input", { id: `${prefix}-notice`, name: "document_ref", type: "text", maxlength: "128" });
          const extra = [
            el("div", { class: "field" }, el("label", { for: `${prefix}-outcome` }, t("decision")), outcome),
            el("div", { class: "field" }, el("label", { for: `${prefix}-notice` }, t("notice")), notice),
          ];
          const { form } = reasonForm("decide", handover, caseId, me, onDone, extra, () => {
            const payload = { outcome: outcome.value };
            if (notice.value.trim()) payload.document_ref = notice.value.trim();
            return payload;
          }, false);
          panel.replaceChildren(form);
          outcome.focus();
        },
      }, t("action.decide")));
    } else if (verb === "forward") {
      buttons.append(el("button", {
        type: "button", class: "secondary", "data-action": "forward",
        "aria-label": `${t("action.forward")}${kindText}`,
        onclick: () => {
          const prefix = `forward-${handover.handover_id}`;
          const select = el("select", { id: `${prefix}-to`, name: "to_agency" },
            allowed.forward_to.map((id) => el("option", { value: id }, names.name(id))));
          const extra = [
            el("div", { class: "field" }, el("label", { for: `${prefix}-to` }, t("forwardTo")), select),
            allowed.forward_until
              ? el("p", { class: "muted" }, `${t("forwardUntil")} ${moment(allowed.forward_until)}`)
              : null,
          ].filter(Boolean);
          // The new handover's id is chosen with the form too: a repeat is the same message.
          const newHandoverId = newId();
          const { form } = reasonForm("forward", handover, caseId, me, onDone, extra, () => ({
            new_handover_id: newHandoverId, to_agency: select.value,
          }));
          panel.replaceChildren(form);
          select.focus();
        },
      }, t("action.forward")));
    }
  }
  box.append(buttons, panel);
  return box;
}
