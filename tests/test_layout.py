"""components/ is grouped by concept, and imports run one way: each package from those before it.

The order is components/__init__.py's list; each package's docstring names every module it holds.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPONENTS = ROOT / "components"


def package_order() -> list[str]:
    """The packages in the order components/__init__.py lists them (`    name/   what it holds`)."""
    doc = ast.get_docstring(ast.parse((COMPONENTS / "__init__.py").read_text())) or ""
    return re.findall(r"^\s{4}([a-z_]+)/\s", doc, re.M)


def modules() -> list[Path]:
    return sorted(p for p in COMPONENTS.rglob("*.py") if p.parent != COMPONENTS)


def imported_packages(path: Path) -> set[str]:
    """The components packages a module imports from, at any depth of the module (imports inside functions too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "components":
                assert len(parts) >= 3, f"{path.relative_to(ROOT)} imports {name}: name the module, not the package"
                found.add(parts[1])
    return found


def test_every_package_is_listed_and_nothing_lives_at_the_top() -> None:
    order = package_order()
    on_disk = sorted(p.name for p in COMPONENTS.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert sorted(order) == on_disk
    assert [p.name for p in COMPONENTS.glob("*.py")] == ["__init__.py"], "every module lives in a package"


@pytest.mark.parametrize("module", modules(), ids=lambda p: str(p.relative_to(COMPONENTS)))
def test_imports_run_one_way(module: Path) -> None:
    order = package_order()
    own = module.relative_to(COMPONENTS).parts[0]
    later = {p for p in imported_packages(module) if order.index(p) > order.index(own)}
    assert not later, f"components/{module.relative_to(COMPONENTS)} imports from {sorted(later)}, listed after {own}/"


PACKAGES = sorted(p.parent for p in COMPONENTS.rglob("__init__.py") if p.parent != COMPONENTS)


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: str(p.relative_to(COMPONENTS)))
def test_each_package_says_what_it_holds(package: Path) -> None:
    where = f"components/{package.relative_to(COMPONENTS)}/__init__.py"
    tree = ast.parse((package / "__init__.py").read_text())
    doc = ast.get_docstring(tree)
    assert doc, f"{where} has no docstring"
    assert len(tree.body) == 1, f"{where} holds code: it only says what lives there"
    named = set(re.findall(r"([a-z_]+)(?:\.py\b|/)", doc))
    held = {p.stem for p in package.glob("*.py")} | {p.name for p in package.iterdir() if (p / "__init__.py").exists()}
    missing = held - {"__init__", "__main__"} - named
    assert not missing, f"{where} does not name {sorted(missing)}"


def test_the_layout_test_sees_an_import_that_runs_back_up(tmp_path: Path) -> None:
    """The check above can fail: a config module importing from the release is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from components.release.records import digest_of\n")
    assert imported_packages(bad) == {"release"}
    order = package_order()
    assert order.index("release") > order.index("config")


def whole_config_fields(source: str) -> list[str]:
    """`Class.field` for each field of an `...Args` class whose type names the whole StackConfig."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name.endswith("Args"):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and "StackConfig" in ast.unparse(item.annotation):
                    found.append(f"{node.name}.{ast.unparse(item.target)}")
    return found


def test_components_take_narrow_args_not_the_whole_config() -> None:
    """Each component's Args name the sections and values it uses (the release sequence in __main__.py picks them
    from the stack's config), so a component reads only what it declares from."""
    args = [m for m in modules() if "Args" in m.read_text()]
    assert len(args) >= 9, "the nine components' Args are where this test looks"
    wide = {str(m.relative_to(COMPONENTS)): f for m in args if (f := whole_config_fields(m.read_text()))}
    assert wide == {}


def test_the_narrow_args_test_sees_a_whole_config_field() -> None:
    source = "@dataclass\nclass EdgeArgs:\n    config: StackConfig\n    host: DockerHost\n"
    assert whole_config_fields(source) == ["EdgeArgs.config"]
