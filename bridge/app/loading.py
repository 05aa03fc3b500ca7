"""Endpoints named on the command line: ``module:Class``, ``module:factory``, ``module``.

Modules are found as uvicorn finds its application: in the current directory first,
then wherever Python looks (``PYTHONPATH``, installed packages). The endpoints named
with ``--endpoint`` come first in dispatch order; the shipped endpoints follow unless
``default_endpoints`` is false. Every failure is an :class:`EndpointLoadError` whose
message is one line that says what is wrong and where (``file:line``).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Sequence
from types import ModuleType
from typing import Any


class EndpointLoadError(Exception):
    """An endpoint spec names nothing that can be imported or built."""


def add_current_directory() -> None:
    """Put the current directory first on ``sys.path`` (once), as ``python -m`` does."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def _where(exc: BaseException, module_name: str | None = None) -> str:
    """``file:line`` of the deepest frame of ``exc`` (in ``module_name``'s file if any)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if module_name is not None:
        spec_file = _module_file(module_name)
        own = [frame for frame in frames if spec_file and frame.filename == spec_file]
        frames = own or frames
    if not frames:
        return "?"
    return f"{frames[-1].filename}:{frames[-1].lineno}"


def _module_file(module_name: str) -> str | None:
    module = sys.modules.get(module_name)
    return getattr(module, "__file__", None)


def import_module(module_name: str) -> ModuleType:
    """Import an endpoint module; :class:`EndpointLoadError` with one line on failure."""
    add_current_directory()
    try:
        return importlib.import_module(module_name)
    except SyntaxError as exc:
        raise EndpointLoadError(
            f"endpoint module {module_name!r} has a syntax error at "
            f"{exc.filename}:{exc.lineno}: {exc.msg}") from exc
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise EndpointLoadError(
                f"cannot import endpoint module {module_name!r}: no module named "
                f"{missing!r} in the current directory ({os.getcwd()}), on PYTHONPATH or "
                "among the installed packages; run from the directory that holds it, or "
                "set PYTHONPATH") from exc
        raise EndpointLoadError(
            f"endpoint module {module_name!r} imports {missing!r}, which is not installed "
            f"({_where(exc)}); install it in the same environment as rpc-bridge") from exc
    except Exception as exc:  # noqa: BLE001 - any failure of the module's own code
        raise EndpointLoadError(
            f"endpoint module {module_name!r} failed while being imported: "
            f"{type(exc).__name__}: {_one_line(exc)} at {_where(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _required_parameters(func: Any) -> list[str] | None:
    """The parameters ``func`` needs besides ``server``; None when it cannot be told."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    return [name for name, param in signature.parameters.items()
            if name != "server" and param.default is param.empty
            and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)]


def _takes_server(func: Any) -> bool:
    try:
        parameters = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    return "server" in parameters or any(
        param.kind == param.VAR_KEYWORD for param in parameters.values())


def _check_buildable(obj: Any, spec: str) -> None:
    needed = _required_parameters(obj)
    if needed:
        kind = "class" if inspect.isclass(obj) else "factory"
        raise EndpointLoadError(
            f"endpoint {spec}: the {kind} needs argument(s) {', '.join(needed)}, but "
            "bridge serve builds it with none (or only server=); give them defaults, or "
            "name a factory function (module:make) that builds it")


def build(obj: Any, spec: str, server: Any) -> list[Any]:
    """The endpoints ``obj`` stands for: built from a class or factory, listed, or itself."""
    if isinstance(obj, (list, tuple)):
        return list(obj)
    if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismethod(obj)):
        return [obj]
    _check_buildable(obj, spec)
    try:
        made = obj(server=server) if _takes_server(obj) else obj()
    except Exception as exc:  # noqa: BLE001 - reported as one line with where it happened
        raise EndpointLoadError(
            f"endpoint {spec}: building it raised {type(exc).__name__}: {_one_line(exc)} "
            f"at {_where(exc)}") from exc
    return list(made) if isinstance(made, (list, tuple)) else [made]


def load_spec(spec: str, server: Any) -> list[Any]:
    """The endpoints of one ``module:Name`` or ``module`` spec."""
    module_name, _, attr = spec.partition(":")
    if not module_name or (":" in spec and not attr):
        raise EndpointLoadError(f"endpoint {spec!r} is not module:Name or module")
    module = import_module(module_name)
    if not attr:
        listed = getattr(module, "ENDPOINTS", None)
        if not isinstance(listed, (list, tuple)):
            raise EndpointLoadError(f"module {module_name!r} has no ENDPOINTS list; name a "
                                    "class or factory as module:Name")
        return list(listed)
    try:
        obj = getattr(module, attr)
    except AttributeError:
        names = sorted(name for name in vars(module) if not name.startswith("_"))
        raise EndpointLoadError(f"module {module_name!r} has no {attr!r} (it has: "
                                f"{', '.join(names[:12]) or 'nothing public'})") from None
    return build(obj, spec, server)


def check_spec(spec: str) -> None:
    """What :func:`load_spec` checks, without building anything: the module imports, the
    name exists, and a class or factory needs no argument but ``server``."""
    module_name, _, attr = spec.partition(":")
    if not module_name or (":" in spec and not attr):
        raise EndpointLoadError(f"endpoint {spec!r} is not module:Name or module")
    module = import_module(module_name)
    if not attr:
        if not isinstance(getattr(module, "ENDPOINTS", None), (list, tuple)):
            raise EndpointLoadError(f"module {module_name!r} has no ENDPOINTS list; name a "
                                    "class or factory as module:Name")
        return
    if not hasattr(module, attr):
        load_spec(spec, None)  # raises the error naming what the module has
    obj = getattr(module, attr)
    if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismethod(obj):
        _check_buildable(obj, spec)


def load_endpoints(specs: Sequence[str], server: Any, defaults: bool = True) -> list[Any]:
    """The endpoints to serve: each spec's, in order, then the shipped ones (``defaults``).

    A class or factory that takes a ``server`` argument receives ``server``.
    """
    result: list[Any] = []
    for spec in specs:
        result.extend(load_spec(spec, server))
    if defaults:
        from endpoints import default_endpoints

        result.extend(default_endpoints(server))
    if not result:
        raise EndpointLoadError("no endpoints to serve: name some with --endpoint "
                                "module:Class, or serve the shipped ones")
    return result
