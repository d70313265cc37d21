"""Read the original repositories' config files without executing them.

mmseg-style configs are Python files, but the ones the seeds ship only assign literals, ``dict(...)`` calls and
earlier names, and inherit through ``_base_``. An AST walk over exactly that subset is enough, and unlike ``exec``
it cannot run code a downloaded config smuggles in. CSAIL's configs are yacs YAML.
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config file that cannot be read safely or does not describe a model we know."""


_DELETE_KEY = "_delete_"


def read_config(path: str | Path) -> dict[str, Any]:
    """Read an original config (``.py`` mmseg style or ``.yaml`` CSAIL style) into a plain dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.suffix == ".py":
        return _read_python_config(path, seen=())
    if path.suffix in (".yaml", ".yml"):
        return _read_yaml_config(path)
    raise ConfigError(f"unsupported config type {path.suffix!r} ({path}): expected an mmseg .py or a CSAIL .yaml")


def _read_yaml_config(path: Path) -> dict[str, Any]:
    import yaml  # PyYAML comes with transformers/datasets

    with open(path) as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise ConfigError(f"{path} does not hold a mapping at its top level")
    return _decode_yacs_values(data)


def _decode_yacs_values(value):
    """yacs reads string values as Python literals when they parse as one, e.g. ``imgSizes: (300, 375)``."""
    if isinstance(value, dict):
        return {k: _decode_yacs_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_yacs_values(v) for v in value]
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def _read_python_config(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"circular _base_ inheritance through {path}")
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as err:
        raise ConfigError(f"{path} is not valid Python: {err}") from err

    names: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            raise ConfigError(f"{path}:{node.lineno}: imports are not allowed in a config")
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring or bare string
        if isinstance(node, ast.Assign):
            value = _evaluate(node.value, names, path)
            for target in node.targets:
                _assign(target, value, names, path)
            continue
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            _assign(node.target, _evaluate(node.value, names, path), names, path)
            continue
        raise ConfigError(f"{path}:{node.lineno}: only assignments of literals are allowed in a config "
                          f"(found {type(node).__name__})")

    bases = names.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    merged: dict[str, Any] = {}
    for base in bases:
        merged = merge_configs(merged, _read_python_config(path.parent / base, seen + (path,)))
    return merge_configs(merged, names)


def _assign(target: ast.AST, value: Any, names: dict[str, Any], path: Path) -> None:
    if isinstance(target, ast.Name):
        names[target.id] = value
    elif isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (tuple, list)):
        if len(target.elts) != len(value):
            raise ConfigError(f"{path}:{target.lineno}: cannot unpack {len(value)} values into {len(target.elts)}")
        for elt, item in zip(target.elts, value):
            _assign(elt, item, names, path)
    else:
        raise ConfigError(f"{path}:{target.lineno}: unsupported assignment target")


_BINARY_OPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a**b,
}


def _evaluate(node: ast.AST, names: dict[str, Any], path: Path) -> Any:
    """Evaluate the literal subset configs use: constants, containers, dict(...), names, arithmetic."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in names:
            return copy.deepcopy(names[node.id])
        if node.id in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[node.id]
        raise ConfigError(f"{path}:{node.lineno}: name {node.id!r} is used before it is assigned")
    if isinstance(node, ast.List):
        return [_evaluate(e, names, path) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_evaluate(e, names, path) for e in node.elts)
    if isinstance(node, ast.Set):
        return {_evaluate(e, names, path) for e in node.elts}
    if isinstance(node, ast.Dict):
        out = {}
        for key, value in zip(node.keys, node.values):
            if key is None:  # {**other}
                out.update(_evaluate(value, names, path))
            else:
                out[_evaluate(key, names, path)] = _evaluate(value, names, path)
        return out
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        out = {}
        for arg in node.args:
            out.update(_evaluate(arg, names, path))
        for kw in node.keywords:
            if kw.arg is None:
                out.update(_evaluate(kw.value, names, path))
            else:
                out[kw.arg] = _evaluate(kw.value, names, path)
        return out
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _evaluate(node.operand, names, path)
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPS:
        return _BINARY_OPS[type(node.op)](_evaluate(node.left, names, path), _evaluate(node.right, names, path))
    if isinstance(node, ast.Subscript):
        container = _evaluate(node.value, names, path)
        return container[_evaluate(node.slice, names, path)]
    what = ast.dump(node)[:80]
    raise ConfigError(f"{path}:{getattr(node, 'lineno', '?')}: expression not allowed in a config: {what}")


def merge_configs(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """mmcv's merge rule: dicts merge recursively unless the override says ``_delete_=True``; anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not value.get(_DELETE_KEY, False):
            out[key] = merge_configs(out[key], value)
        else:
            value = copy.deepcopy(value)
            if isinstance(value, dict):
                value.pop(_DELETE_KEY, None)
            out[key] = value
    return out
