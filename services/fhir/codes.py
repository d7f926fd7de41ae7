"""The code systems and value maps of the facade (docs/fhir.md names them)."""

from __future__ import annotations

FHIR_JSON = "application/fhir+json"

# The hub's own code systems: URNs, so no host is implied that answers for them.
SYSTEM_ERROR = "urn:handover-hub:fhir:error-code"
SYSTEM_HANDOVER_KIND = "urn:handover-hub:fhir:handover-kind"
SYSTEM_HANDOVER_STATE = "urn:handover-hub:fhir:handover-state"
SYSTEM_DATA_CATEGORY = "urn:handover-hub:fhir:data-category"
SYSTEM_EVENT_TYPE = "urn:handover-hub:fhir:event-type"
SYSTEM_INPUT_TYPE = "urn:handover-hub:fhir:task-input"
SYSTEM_MESSAGE_ID = "urn:handover-hub:message-id"
SYSTEM_HASH_CHAIN = "urn:handover-hub:hash-chain"
SYSTEM_AGENCY = "urn:handover-hub:agency"
SYSTEM_CASE = "urn:handover-hub:case"
INPUT_DATA_CATEGORY = "data-category"

# The handover state machine in Task.status (forwarded: the first Task is rejected
# by its owner, who passed it on; the next Task is ``basedOn`` it).
TASK_STATUS = {
    "offered": "requested",
    "accepted": "accepted",
    "declined": "rejected",
    "withdrawn": "cancelled",
    "completed": "completed",
    "forwarded": "rejected",
}

# A Task status a client sets (PATCH/PUT) and the message that records it.
STATUS_MESSAGE = {
    "accepted": "handover.accepted",
    "rejected": "handover.declined",
    "completed": "handover.completed",
    "cancelled": "handover.withdrawn",
}
# The messages whose payload needs a reason (from Task.statusReason).
NEEDS_REASON = {"handover.declined", "handover.withdrawn"}

# The hub's error codes and FHIR's issue types (OperationOutcome.issue.code).
ISSUE_TYPE = {
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    408: "timeout",
    409: "business-rule",
    413: "too-costly",
    415: "not-supported",
    422: "invalid",
    429: "throttled",
}
