"""The package's structure rules, checked mechanically on its source with ``ast``.

* No module in ``bridge/`` (generated ``bridge/_proto`` aside) is over 500 lines.
* The layers above the drivers (``bridge/rpc``, ``bridge/gateway``, ``bridge/app`` and
  ``bridge/__init__.py``) import no driver module, name none in a string (an
  ``importlib`` path), probe no driver, listener or transport with ``getattr``/``hasattr``
  and a literal name of theirs, and touch no private member of another module's objects.
* No driver imports ``bridge.rpc``, ``bridge.gateway``, ``bridge.app`` or another driver.

The drivers are the modules the registry ``bridge.transport.DRIVERS`` names.
"""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Iterator

import pytest

import bridge.transport
from bridge.transport.base import Driver, Listener

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bridge"
MAX_LINES = 500

UPPER_LAYERS = ("bridge/rpc/", "bridge/gateway/", "bridge/app/", "bridge/__init__.py")
ABOVE_DRIVERS = ("bridge.rpc", "bridge.gateway", "bridge.app")
#: Names of the standard library whose "private" members are their public API.
STDLIB_PRIVATE = {("os", "_exit"), ("sys", "_getframe")}


def driver_packages() -> set[str]:
    """The module (or package) of every registered driver."""
    return {path.partition(":")[0] for path in bridge.transport.DRIVERS.values()}


def sources() -> Iterator[tuple[str, str, ast.Module]]:
    """(path from the root, module name, tree) of every module of the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("bridge/_proto/"):
            continue
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield rel, ".".join(parts), ast.parse(path.read_text(), rel)


def imported_modules(module: str, rel: str, tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import, with ``from X import Y`` giving both
    ``X`` and ``X.Y`` (Y may be a submodule)."""
    package = module if rel.endswith("__init__.py") else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def within(name: str, packages: set[str] | tuple[str, ...]) -> str | None:
    """The package of ``packages`` that ``name`` is or is inside, else None."""
    for package in packages:
        if name == package or name.startswith(package + "."):
            return package
    return None


def interface_names() -> set[str]:
    """Every class-level name of the drivers, their listeners and Transport: what a layer
    above would probe a driver for (``send_async``, ``reset``, ``set_serving``...)."""
    for scheme in bridge.transport.DRIVERS:
        bridge.transport.driver_class(f"{scheme}://")  # imports it, and its listener

    def subclasses(cls: type) -> Iterator[type]:
        yield cls
        for sub in cls.__subclasses__():
            yield from subclasses(sub)

    names: set[str] = set()
    for cls in [*subclasses(Driver), *subclasses(Listener), bridge.transport.Transport]:
        for klass in cls.__mro__:
            if klass is not object:
                names.update(name for name in vars(klass) if not name.startswith("__"))
    return names


def test_driver_registry_is_what_the_rules_check():
    assert driver_packages() >= {"bridge.transport.memory", "bridge.transport.grpc",
                                 "bridge.transport.amqp"}


def test_no_module_over_500_lines():
    lengths = {rel: len((ROOT / rel).read_text().splitlines()) for rel, _, _ in sources()}
    too_long = {rel: n for rel, n in lengths.items() if n > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines (split them): {too_long}"


def test_upper_layers_import_no_driver():
    drivers = driver_packages()
    found = []
    for rel, module, tree in sources():
        if not rel.startswith(UPPER_LAYERS):
            continue
        for line, name in imported_modules(module, rel, tree):
            if within(name, drivers):
                found.append(f"{rel}:{line} imports {name}")
        for node in ast.walk(tree):  # importlib.import_module("bridge.transport.grpc")...
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value.partition(":")[0]
                if within(text, drivers):
                    found.append(f"{rel}:{node.lineno} names the driver module {node.value!r}")
    assert not found, "the layers above transport/ use only bridge.transport:\n" + \
                      "\n".join(found)


def test_upper_layers_probe_no_driver_with_getattr_or_hasattr():
    names = interface_names()
    assert {"send", "send_async", "listen", "reset", "set_serving", "serve_unrouted",
            "check_health", "hand_over", "implements", "client_url"} <= names
    found = []
    for rel, _, tree in sources():
        if not rel.startswith(UPPER_LAYERS):
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in ("getattr", "hasattr") and len(node.args) >= 2
                    and isinstance(node.args[1], ast.Constant)
                    and node.args[1].value in names):
                found.append(f"{rel}:{node.lineno} {ast.unparse(node)}")
    assert not found, ("read Transport.implements (Capabilities) instead of probing:\n"
                       + "\n".join(found))


def test_upper_layers_touch_no_private_member_of_another_module():
    """``obj._name`` where ``_name`` is not defined in the module itself (a transport's
    ``_driver``, a driver's ``_send``, a server's ``_state``...)."""
    found = []
    for rel, _, tree in sources():
        if not rel.startswith(UPPER_LAYERS):
            continue
        own: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                own.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                own.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                own.add(node.id)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__")) or node.attr in own:
                continue
            base = node.value
            if isinstance(base, ast.Name) and (base.id in ("self", "cls")
                                               or (base.id, node.attr) in STDLIB_PRIVATE):
                continue
            found.append(f"{rel}:{node.lineno} {ast.unparse(node)}")
    assert not found, "private members of other modules' objects:\n" + "\n".join(found)


@pytest.mark.parametrize("driver", sorted(driver_packages()))
def test_drivers_import_nothing_above_them_nor_each_other(driver):
    others = tuple(sorted(driver_packages() - {driver}))
    found = []
    checked = 0
    for rel, module, tree in sources():
        if not within(module, {driver}):
            continue
        checked += 1
        for line, name in imported_modules(module, rel, tree):
            if within(name, ABOVE_DRIVERS) or within(name, others):
                found.append(f"{rel}:{line} imports {name}")
    assert checked, f"no module of {driver} found"
    assert not found, f"{driver} depends on what is above it or on another driver:\n" + \
                      "\n".join(found)


def test_the_checks_catch_what_they_look_for():
    """The import resolver sees relative and from-imports (a check that sees nothing
    passes for nothing)."""
    tree = ast.parse("from ..grpc import values\nfrom . import status\nimport bridge.app.cli\n"
                     "from bridge.transport import amqp\n")
    names = {name for _, name in imported_modules("bridge.transport.memory",
                                                  "bridge/transport/memory.py", tree)}
    assert {"bridge.grpc.values", "bridge.transport.status", "bridge.app.cli",
            "bridge.transport.amqp"} <= names
    assert within("bridge.transport.amqp", driver_packages()) == "bridge.transport.amqp"
    package_tree = ast.parse("from .grpc import values\n")
    names = {name for _, name in imported_modules("bridge.transport", "bridge/transport/"
                                                  "__init__.py", package_tree)}
    assert "bridge.transport.grpc.values" in names


def test_every_module_is_in_the_architecture_table():
    """docs/architecture.md's module table names every module of the package."""
    table = (ROOT / "docs" / "architecture.md").read_text()
    missing = [rel for rel, _, _ in sources()
               if f"`{rel}`" not in table and f"`{pathlib.PurePath(rel).name}`" not in table]
    assert not missing, f"add these modules to docs/architecture.md's table: {missing}"
