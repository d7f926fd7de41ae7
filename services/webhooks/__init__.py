"""Webhooks: an agency's endpoints receive the events its feed shows, signed per the
Standard Webhooks specification (``signing``), to public addresses only (``targets``),
managed by ``endpoints`` and delivered by ``dispatcher``, apart from recording."""
