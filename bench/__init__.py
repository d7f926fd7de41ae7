"""Benchmarks: ``python -m bench NAME [--quick]``; see ARCHITECTURE.md for the format."""
