"""The domain package is pure: no I/O, no services, no infrastructure.

Every import in ``domain/**/*.py`` (the ``domain/case/`` package included) must be
the standard library (minus the modules that do I/O), ``eventsourcing.domain``,
``pydantic``, ``__future__`` or ``domain`` itself. The checker is tested on small
sources too, so this test can fail.
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


def _imported_names(tree: ast.AST, package: str = "domain") -> list[str]:
    """Dotted names of everything imported, e.g. ``from a.b import c`` gives ``a.b.c``;
    relative imports are resolved against ``package`` (the module's own package)."""
    parts = package.split(".")
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level > len(parts):
                base = "." * node.level + (node.module or "")  # escapes the package
            elif node.level:
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = anchor + (f".{node.module}" if node.module else "")
            else:
                base = node.module or ""
            names.extend(f"{base}.{alias.name}" for alias in node.names)
    return names


def is_allowed(name: str) -> bool:
    if any(_within(name, package) for package in ALLOWED_PACKAGES):
        return True
    top = name.split(".", 1)[0]
    return top in sys.stdlib_module_names and top not in IO_MODULES


def forbidden_imports(source: str, package: str = "domain") -> list[str]:
    return [name for name in _imported_names(ast.parse(source), package) if not is_allowed(name)]


def package_of(path: Path) -> str:
    """``domain/case/act.py`` lives in ``domain.case``; ``domain/case/__init__.py`` too."""
    return ".".join(("domain", *path.parent.relative_to(DOMAIN_DIR).parts))


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


@pytest.mark.parametrize(
    ("source", "allowed"),
    [
        ("from .. import errors", True),
        ("from ..policy import DeadlinePolicy", True),
        ("from .act import Act", True),
        ("from ...services import x", False),
        ("import sqlite3", False),
    ],
)
def test_checker_resolves_relative_imports_inside_the_case_package(
    source: str, allowed: bool
) -> None:
    assert (forbidden_imports(source, "domain.case") == []) is allowed


def test_case_modules_belong_to_the_case_package() -> None:
    assert package_of(DOMAIN_DIR / "case" / "act.py") == "domain.case"
    assert package_of(DOMAIN_DIR / "policy.py") == "domain"


def test_checker_reports_each_offending_import() -> None:
    source = "import sqlite3\nfrom datetime import datetime\nfrom services.x import y\n"

    assert forbidden_imports(source) == ["sqlite3", "services.x.y"]


# ---- the domain package -------------------------------------------------------------------


CASE_MODULES = {"__init__", "act", "consent", "handover", "lifecycle", "records"}


def test_domain_package_is_found() -> None:
    names = {str(path.relative_to(DOMAIN_DIR)) for path in domain_files()}

    assert {"__init__.py", "errors.py", "policy.py", "values.py", "agency.py"} <= names
    # The case aggregate is a package now: every module of it is checked.
    assert {f"case/{module}.py" for module in CASE_MODULES} <= names


@pytest.mark.parametrize("path", domain_files(), ids=lambda p: str(p.relative_to(DOMAIN_DIR)))
def test_domain_module_imports_nothing_impure(path: Path) -> None:
    assert forbidden_imports(path.read_text(encoding="utf-8"), package_of(path)) == []
