"""Save a model so that ``trust_remote_code=True`` users can load it without hf_seg installed.

transformers copies the file that defines a class named in ``auto_map``, plus the files it imports with
single-dot relative imports, from the model folder. hf_seg's modules import each other across packages
(``from ...layers import ...``), so this module writes the needed modules side by side into the folder with their
hf_seg imports rewritten as ``from .module import ...``. Only torch, transformers and the model's own third-party
dependencies (timm) are then needed to load it.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
from contextlib import contextmanager
from pathlib import Path

PACKAGE = "hf_seg"


def _module_file(name: str) -> Path:
    return Path(inspect.getfile(importlib.import_module(name)))


def _is_package(name: str) -> bool:
    return _module_file(name).name == "__init__.py"


def _resolve(node: ast.ImportFrom, module: str) -> str | None:
    """The absolute module an ``ImportFrom`` refers to, if it is inside hf_seg."""
    if node.level == 0:
        target = node.module or ""
    else:
        base = module if _is_package(module) else module.rsplit(".", 1)[0]
        for _ in range(node.level - 1):
            base = base.rsplit(".", 1)[0]
        target = f"{base}.{node.module}" if node.module else base
    return target if target == PACKAGE or target.startswith(PACKAGE + ".") else None


def _dependencies(module: str) -> dict[str, list[ast.ImportFrom]]:
    tree = ast.parse(_module_file(module).read_text())
    found: dict[str, list[ast.ImportFrom]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == PACKAGE for a in node.names):
            raise ValueError(f"{module}: use 'from ... import' for hf_seg imports so they can be bundled")
        if isinstance(node, ast.ImportFrom):
            target = _resolve(node, module)
            if target is not None:
                found.setdefault(target, []).append(node)
    return found


def collect_modules(roots: list[str]) -> list[str]:
    """Every hf_seg module the roots need, transitively (a name imported from a package may be a submodule)."""
    seen: list[str] = []
    stack = list(roots)
    while stack:
        module = stack.pop()
        if module in seen:
            continue
        seen.append(module)
        for target, nodes in _dependencies(module).items():
            stack.append(target)
            for node in nodes:
                for alias in node.names:
                    candidate = f"{target}.{alias.name}"
                    if importlib.util.find_spec(candidate) is not None if _is_package(target) else False:
                        stack.append(candidate)
    return seen


def _flat_names(modules: list[str]) -> dict[str, str]:
    last = [m.rsplit(".", 1)[-1] for m in modules]
    return {
        m: (short if last.count(short) == 1 and short != PACKAGE else m[len(PACKAGE) + 1:].replace(".", "_") or "hf_seg")
        for m, short in zip(modules, last)
    }


def _rewrite(module: str, flat: dict[str, str]) -> str:
    source = _module_file(module).read_text()
    lines = source.splitlines(keepends=True)
    edits = []
    for target, nodes in _dependencies(module).items():
        for node in nodes:
            parts = []
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if submodule in flat:  # ``from .pkg import submodule``
                    parts.append(f"from . import {flat[submodule]} as {alias.asname or alias.name}")
                else:
                    name = alias.name + (f" as {alias.asname}" if alias.asname else "")
                    parts.append(f"from .{flat[target]} import {name}")
            indent = lines[node.lineno - 1][: node.col_offset]
            edits.append((node.lineno, node.end_lineno, "".join(f"{indent}{p}\n" for p in parts)))
    for start, end, text in sorted(edits, reverse=True):
        lines[start - 1 : end] = [text]
    return "".join(lines)


def save_with_remote_code(model, save_directory, processor=None) -> list[Path]:
    """``save_pretrained`` plus the bundled modules and ``auto_map`` entries; returns the code files written."""
    save_directory = Path(save_directory)
    save_directory.mkdir(parents=True, exist_ok=True)
    config_class, model_class = type(model.config), type(model)
    roots = [config_class.__module__, model_class.__module__]
    if processor is not None:
        roots.append(type(processor).__module__)
    modules = collect_modules(roots)
    flat = _flat_names(modules)
    written = []
    for module in modules:
        path = save_directory / f"{flat[module]}.py"
        path.write_text(_rewrite(module, flat))
        written.append(path)

    auto_map = {
        "AutoConfig": f"{flat[config_class.__module__]}.{config_class.__name__}",
        "AutoModelForSemanticSegmentation": f"{flat[model_class.__module__]}.{model_class.__name__}",
    }
    with _temporarily(model.config, "auto_map", auto_map):  # the caller's model is left as it was
        model.save_pretrained(save_directory)
    if processor is not None:
        auto_map = {"AutoImageProcessor": f"{flat[type(processor).__module__]}.{type(processor).__name__}"}
        with _temporarily(processor, "auto_map", auto_map):
            processor.save_pretrained(save_directory)
    return written


@contextmanager
def _temporarily(obj, name: str, value):
    """Set ``obj.name = value`` for the duration, then restore the attribute (or its absence)."""
    missing = object()
    previous = obj.__dict__.get(name, missing)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if previous is missing:
            delattr(obj, name)
        else:
            setattr(obj, name, previous)


if __name__ == "__main__":  # pragma: no cover - debugging aid: list what a family bundles
    print(collect_modules(sys.argv[1:]))
