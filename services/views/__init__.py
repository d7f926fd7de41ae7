"""Materialised views: tables beside the events, written with their tracked position
in one transaction (the ``eventsourcing`` library's tracking recorders)."""
