"""Import contracts between the packages (ARCHITECTURE.md's layers).

The hub's layers point one way: ``services`` may import ``projections`` and
``domain``, ``projections`` may import ``domain``, and ``domain`` imports neither
(what else it may import: ``test_domain_purity.py``). The shipped packages never
import the development ones (``tests``, ``bench``, ``tools``), and the benchmarks
never import the tests, so they run from an installed checkout without them.

Every import counts, also one inside a function, a ``try`` or ``if TYPE_CHECKING``:
a lazy import is still a dependency. The checker is tested on small sources too,
so this test can fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package: the top-level packages it must not import
FORBIDDEN: dict[str, frozenset[str]] = {
    "domain": frozenset({"projections", "services", "tests", "bench", "tools"}),
    "projections": frozenset({"services", "tests", "bench", "tools"}),
    "services": frozenset({"tests", "bench", "tools"}),
    "bench": frozenset({"tests"}),
}


def imported_modules(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """Absolute dotted names imported by ``module`` (``from a.b import c`` gives ``a.b.c``).

    Relative imports are resolved against ``module``'s package (the module itself
    when it is a package's ``__init__``).
    """
    package = module.split(".") if is_package else module.split(".")[:-1]
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                kept = len(package) - (node.level - 1)
                if kept <= 0:  # climbs out of the top-level package: name it as written
                    base = "." * node.level + (node.module or "")
                else:
                    base = ".".join([*package[:kept], *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            names.extend(f"{base}.{alias.name}" for alias in node.names)
    return names


def violations(source: str, module: str, *, is_package: bool = False) -> list[str]:
    forbidden = FORBIDDEN.get(module.split(".", 1)[0], frozenset())
    return [
        name
        for name in imported_modules(source, module, is_package=is_package)
        if name.split(".", 1)[0] in forbidden or name.startswith(".")
    ]


def module_name(path: Path) -> tuple[str, bool]:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def checked_files() -> list[Path]:
    return sorted(path for package in FORBIDDEN for path in (ROOT / package).glob("**/*.py"))


# ---- the checker itself ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("domain.case", "import projections.case_doc"),
        ("domain.case", "from services.application import MessageService"),
        ("domain.case", "from projections import case_doc"),
        ("domain.case", "def f():\n    from services import demo\n"),
        ("domain.case", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import services"),
        ("domain.case", "from ..services import demo"),  # climbs out of the package
        ("projections.case_view", "import services.views.store"),
        ("projections.case_view", "from services import crypto"),
        ("projections.case_view", "try:\n    import services\nexcept ImportError:\n    pass\n"),
        ("projections.case_view", "from tests.factories import T0"),
        ("services.cli", "from tests.factories import T0"),
        ("services.cli", "import bench.history"),
        ("services.cli", "from tools import mypy_baseline"),
        ("services.views.store", "from ...tests import factories"),
        ("bench.kafka", "from tests.kafka_broker import start_broker"),
        ("bench.kafka", "def broker():\n    from tests import kafka_broker\n"),
        ("bench", "from ..tests import factories"),
    ],
)
def test_checker_flags_forbidden_imports(module: str, source: str) -> None:
    assert violations(source, module, is_package=module == "bench"), f"missed in {module}"


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("domain.case", "from domain.values import Stage"),
        ("domain.case", "from . import errors"),
        ("domain.case", "from .policy import DeadlinePolicy"),
        ("projections.case_view", "from projections.case_doc import Doc"),
        ("projections.case_view", "from domain.values import Stage"),
        ("projections.case_view", "from . import case_doc"),
        ("services.cli", "from projections.case_view import case_view"),
        ("services.cli", "from domain.errors import DomainError"),
        ("services.views.store", "from ..settings import Settings"),  # services.settings
        ("services.views.store", "from . import queries"),
        ("bench.kafka", "from services.kafka.relay import Relay"),
        ("bench.kafka", "from bench.tansu import start_broker"),
        ("bench.kafka", "from .tansu import start_broker"),
        ("bench", "from . import common"),
    ],
)
def test_checker_allows_imports_down_the_layers(module: str, source: str) -> None:
    assert violations(source, module, is_package=module == "bench") == []


def test_relative_imports_resolve_against_the_package() -> None:
    source = "from . import a\nfrom .b import c\nfrom .. import d\nfrom ..e import f\n"

    assert imported_modules(source, "services.views.store") == [
        "services.views.a",
        "services.views.b.c",
        "services.d",
        "services.e.f",
    ]
    assert imported_modules("from . import a", "services.views", is_package=True) == [
        "services.views.a"
    ]


def test_checker_reports_each_offending_import() -> None:
    source = "import services.demo\nfrom domain import errors\nfrom tests.factories import T0\n"

    assert violations(source, "projections.x") == ["services.demo", "tests.factories.T0"]


# ---- the packages -------------------------------------------------------------------------


def test_every_package_is_found() -> None:
    packages = {path.relative_to(ROOT).parts[0] for path in checked_files()}

    assert packages == set(FORBIDDEN)
    assert len(checked_files()) > 40


@pytest.mark.parametrize("path", checked_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_imports_only_down_the_layers(path: Path) -> None:
    module, is_package = module_name(path)

    assert violations(path.read_text(encoding="utf-8"), module, is_package=is_package) == []
