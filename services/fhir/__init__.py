"""The FHIR R4 facade's mapping: pure functions from the hub's views (the
disclosure-filtered case view, an agency's part of a history, the registry's
agency rows) to FHIR JSON dicts, and from a FHIR ``Task`` to a handover message.

Nothing here reads a store or decides who may see what: ``services.api.fhir``
calls ``ReadService`` and ``MessageService`` and hands their answers here.
See docs/fhir.md for the mapping.
"""
