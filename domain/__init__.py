"""The hub's domain model: pure, no I/O (guarded by tests/unit/test_domain_purity.py)."""
