"""The domain package is pure: no I/O, no services, no infrastructure.

Every import in ``domain/*.py`` must be the standard library (minus the modules
that do I/O), ``eventsourcing.domain``, ``pydantic``, ``__future__`` or ``domain``
itself. The checker is tested on small sources too, so this test can fail.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

DOMAIN_DIR = Path(__file__).resolve().parents[2] / "domain"

IO_MODULES = frozenset(
    {
        "sqlite3",
        "socket",
        "subprocess",
        "os",
        "pathlib",
        "http",
        "urllib",
        "logging",
        "io",
        "shutil",
        "tempfile",
        "asyncio",
        "threading",
        "multiprocessing",
    }
)
ALLOWED_PACKAGES = ("__future__", "domain", "eventsourcing.domain", "pydantic")


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _imported_names(tree: ast.AST) -> list[str]:
    """Dotted names of everything imported, e.g. ``from a.b import c`` gives ``a.b.c``."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 1:
                base = "domain" + (f".{node.module}" if node.module else "")
            elif node.level > 1:
                base = "." * node.level + (node.module or "")  # escapes the package
            else:
                base = node.module or ""
            names.extend(f"{base}.{alias.name}" for alias in node.names)
    return names


def is_allowed(name: str) -> bool:
    if any(_within(name, package) for package in ALLOWED_PACKAGES):
        return True
    top = name.split(".", 1)[0]
    return top in sys.stdlib_module_names and top not in IO_MODULES


def forbidden_imports(source: str) -> list[str]:
    return [name for name in _imported_names(ast.parse(source)) if not is_allowed(name)]


def domain_files() -> list[Path]:
    return sorted(DOMAIN_DIR.glob("**/*.py"))


# ---- the checker itself ----------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "import sqlite3",
        "from sqlite3 import connect",
        "import services.x",
        "from services.x import handler",
        "from services import bootstrap",
        "import os.path",
        "from os import environ",
        "from pathlib import Path",
        "import logging",
        "from http import client",
        "import urllib.request",
        "import eventsourcing",
        "import eventsourcing.application",
        "from eventsourcing.sqlite import Factory",
        "from eventsourcing import application",
        "import structlog",
        "import psycopg",
        "from ..services import x",
        "def f():\n    import subprocess\n",
        "try:\n    import asyncio\nexcept ImportError:\n    pass\n",
    ],
)
def test_checker_flags_forbidden_imports(source: str) -> None:
    assert forbidden_imports(source), f"checker missed: {source!r}"


@pytest.mark.parametrize(
    "source",
    [
        "from __future__ import annotations",
        "from datetime import UTC, datetime",
        "import dataclasses",
        "from collections.abc import Sequence",
        "from eventsourcing.domain import Aggregate, event",
        "from eventsourcing import domain",
        "import pydantic",
        "from pydantic import BaseModel",
        "from domain import errors",
        "from domain.values import Stage",
        "from . import errors",
        "from .policy import DeadlinePolicy",
    ],
)
def test_checker_allows_pure_imports(source: str) -> None:
    assert forbidden_imports(source) == []


def test_checker_reports_each_offending_import() -> None:
    source = "import sqlite3\nfrom datetime import datetime\nfrom services.x import y\n"

    assert forbidden_imports(source) == ["sqlite3", "services.x.y"]


# ---- the domain package -------------------------------------------------------------------


def test_domain_package_is_found() -> None:
    names = {path.name for path in domain_files()}

    assert {"__init__.py", "case.py", "errors.py", "policy.py", "values.py", "agency.py"} <= names


@pytest.mark.parametrize("path", domain_files(), ids=lambda p: str(p.relative_to(DOMAIN_DIR)))
def test_domain_module_imports_nothing_impure(path: Path) -> None:
    assert forbidden_imports(path.read_text(encoding="utf-8")) == []
