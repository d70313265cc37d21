"""Read the original repositories' config files without executing them, within fixed limits.

mmseg-style configs are Python files, but the ones the seeds ship only assign literals, ``dict(...)`` calls and
earlier names, and inherit through ``_base_``. An AST walk over exactly that subset is enough, and unlike ``exec``
it cannot run code a downloaded config smuggles in. CSAIL's configs are yacs YAML.

A config is untrusted input, so reading one is bounded: files are regular files of at most ``MAX_CONFIG_BYTES``,
``_base_`` chains have at most ``MAX_BASE_FILES`` files, every value (YAML aliases and sequence repetition expanded,
names copied) counts against one budget of ``MAX_VALUES``, containers nest at most ``MAX_DEPTH`` deep and integers
have at most ``MAX_INT_BITS`` bits — so ``9**9**9``, ``[0] * 10**10``, a YAML alias bomb or ``_base_ = '/dev/zero'``
fail at once with a :class:`ConfigError` instead of running until memory or patience ends. The seeds' configs are a
few kB with a few hundred values, far inside these limits. Every mistake in a config (syntax, ``1/0``, a missing base
file, an unknown name) is a :class:`ConfigError` naming the file and line.
"""

from __future__ import annotations

import ast
import copy
import io
import math
import stat
from pathlib import Path
from typing import Any

MAX_CONFIG_BYTES = 1 << 20  # one config file
MAX_BASE_FILES = 64  # files in one ``_base_`` inheritance tree
MAX_VALUES = 200_000  # values built while reading one config, copies and expansions included
MAX_DEPTH = 40  # nesting of lists / dicts
MAX_INT_BITS = 4096


class ConfigError(ValueError):
    """A config file that cannot be read safely or does not describe a model we know."""


_DELETE_KEY = "_delete_"


def read_config(path: str | Path) -> dict[str, Any]:
    """Read an original config (``.py`` mmseg style or ``.yaml`` yacs style) into a plain dict."""
    path = Path(path)
    if path.suffix == ".py":
        return _read_python_config(path, seen=(), budget=_Budget())
    if path.suffix in (".yaml", ".yml"):
        return _read_yaml_config(path)
    _read_text(path)  # a missing or unreadable file says so before its type does
    raise ConfigError(f"unsupported config type {path.suffix!r} ({path}): expected an mmseg .py or a yacs .yaml")


class _Budget:
    """Counts the values built while reading one config (with its bases)."""

    def __init__(self, limit: int = MAX_VALUES):
        self.limit = limit
        self.used = 0
        self.files = 0

    def spend(self, count: int, where: str) -> None:
        self.used += count
        if self.used > self.limit:
            raise ConfigError(f"{where}: the config builds more than {self.limit} values (a repetition, power or "
                              f"alias that expands without bound?)")


def _read_text(path: Path) -> str:
    """The text of ``path`` if it is a regular file of at most ``MAX_CONFIG_BYTES`` (not a device, fifo, folder)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as err:
        raise ConfigError(f"cannot read the config {path}: {err.strerror or err}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path} is not a regular file: a config must be a .py or .yaml file")
    if info.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is {info.st_size} bytes; configs are at most {MAX_CONFIG_BYTES} bytes")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)  # a file that grows while read is still bounded
    except OSError as err:
        raise ConfigError(f"cannot read the config {path}: {err.strerror or err}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes; configs are smaller")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not UTF-8 text (byte {err.start}): not a config file") from None


# ------------------------------------------------------------------------------------------------ YAML (CSAIL)
def _read_yaml_config(path: Path) -> dict[str, Any]:
    import yaml  # PyYAML comes with transformers/datasets

    stream = io.StringIO(_read_text(path))
    stream.name = str(path)  # PyYAML names the file in its error marks
    try:
        data = yaml.safe_load(stream)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} does not hold a mapping at its top level")
    size = _expanded_size(data, {}, str(path), depth=0)
    if size > MAX_VALUES:
        raise ConfigError(f"{path}: the YAML expands to {size:,} values (aliases repeating aliases?); configs hold "
                          f"at most {MAX_VALUES:,}")
    return _decode_yacs_values(data, _Budget(), str(path), depth=0)


def _expanded_size(value, memo: dict, where: str, depth: int) -> int:
    """Values in ``value`` with every YAML alias expanded, counted once per distinct node (so an alias bomb is
    measured without being expanded)."""
    if depth > MAX_DEPTH:
        raise ConfigError(f"{where}: values nested more than {MAX_DEPTH} deep")
    if not isinstance(value, (dict, list)):
        return 1
    if id(value) not in memo:
        items = value.values() if isinstance(value, dict) else value
        memo[id(value)] = 1 + sum(_expanded_size(item, memo, where, depth + 1) for item in items)
    return memo[id(value)]


def _decode_yacs_values(value, budget: _Budget, where: str, depth: int):
    """yacs reads string values as Python literals when they parse as one, e.g. ``imgSizes: (300, 375)``.

    YAML aliases repeat a node without copying it; expanding them here counts every copy, so an alias bomb stops
    at the budget."""
    budget.spend(1, where)
    if depth > MAX_DEPTH:
        raise ConfigError(f"{where}: values nested more than {MAX_DEPTH} deep")
    if isinstance(value, dict):
        return {k: _decode_yacs_values(v, budget, where, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_yacs_values(v, budget, where, depth + 1) for v in value]
    if isinstance(value, str):
        try:
            literal = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return value
        _measure(literal, budget, where, depth)
        return literal
    return value


# ------------------------------------------------------------------------------------------------ Python (mmseg)
def _read_python_config(path: Path, seen: tuple[Path, ...], budget: _Budget) -> dict[str, Any]:
    try:
        path = path.resolve()
    except (OSError, RuntimeError) as err:  # a symlink loop
        raise ConfigError(f"cannot resolve the config path {path}: {err}") from None
    if path in seen:
        raise ConfigError(f"circular _base_ inheritance through {path}")
    budget.files += 1
    if budget.files > MAX_BASE_FILES:
        raise ConfigError(f"{path}: the _base_ inheritance reads more than {MAX_BASE_FILES} files")
    text = _read_text(path)
    try:
        tree = ast.parse(text, filename=str(path))
    except SyntaxError as err:
        raise ConfigError(f"{path} is not valid Python: {err}") from None
    except (ValueError, RecursionError, MemoryError) as err:  # null bytes, nesting the parser refuses
        raise ConfigError(f"{path} is not valid Python: {type(err).__name__}: {err}") from None

    names: dict[str, Any] = {}
    sizes: dict[str, int] = {}
    for node in tree.body:
        where = f"{path}:{node.lineno}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            raise ConfigError(f"{where}: imports are not allowed in a config")
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring or bare string
        if isinstance(node, ast.Assign):
            targets, value_node = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value_node = [node.target], node.value
        else:
            raise ConfigError(f"{where}: only assignments of literals are allowed in a config "
                              f"(found {type(node).__name__})")
        try:
            value = _Evaluator(names, sizes, budget, where).evaluate(value_node)
            size = _measure(value, budget, where, depth=0)
            for target in targets:
                _assign(target, value, size, names, sizes, where)
        except ConfigError:
            raise
        except (ArithmeticError, TypeError, LookupError, ValueError, AttributeError) as err:
            raise ConfigError(f"{where}: {type(err).__name__}: {err}") from None
        except (RecursionError, MemoryError):
            raise ConfigError(f"{where}: the value is too large or nested too deeply for a config") from None

    bases = names.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, (list, tuple)) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a file name or a list of file names, not {bases!r:.80}")
    merged: dict[str, Any] = {}
    for base in bases:
        base_path = path.parent / base
        if base_path.suffix != ".py":
            raise ConfigError(f"{path}: _base_ {base!r} is not a .py config")
        if not base_path.exists():
            raise ConfigError(f"{path}: _base_ file {base!r} not found (looked for {base_path})")
        merged = merge_configs(merged, _read_python_config(base_path, seen + (path,), budget))
    return merge_configs(merged, names)


def _measure(value: Any, budget: _Budget, where: str, depth: int) -> int:
    """Number of values in ``value`` (containers expanded), spent from ``budget``; refuses too deep nesting."""
    if depth > MAX_DEPTH:
        raise ConfigError(f"{where}: values nested more than {MAX_DEPTH} deep")
    count = 1
    if isinstance(value, dict):
        for key, item in value.items():
            count += _measure(key, budget, where, depth + 1) + _measure(item, budget, where, depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            count += _measure(item, budget, where, depth + 1)
    else:
        budget.spend(1, where)
    return count


def _assign(target: ast.AST, value: Any, size: int, names: dict, sizes: dict, where: str) -> None:
    if isinstance(target, ast.Name):
        names[target.id] = value
        sizes[target.id] = size
    elif isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (tuple, list)):
        if len(target.elts) != len(value):
            raise ConfigError(f"{where}: cannot unpack {len(value)} values into {len(target.elts)}")
        for elt, item in zip(target.elts, value):
            _assign(elt, item, size, names, sizes, where)
    else:
        raise ConfigError(f"{where}: unsupported assignment target")


class _Evaluator:
    """Evaluates the literal subset configs use: constants, containers, dict(...), names, arithmetic.

    Every name copied and every repetition is paid for from the budget *before* it is built."""

    def __init__(self, names: dict, sizes: dict, budget: _Budget, where: str):
        self.names, self.sizes, self.budget, self.where = names, sizes, budget, where

    def evaluate(self, node: ast.AST) -> Any:
        self.budget.spend(1, self.where)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in self.names:
                self.budget.spend(self.sizes.get(node.id, 1), self.where)
                return copy.deepcopy(self.names[node.id])
            if node.id in ("True", "False", "None"):
                return {"True": True, "False": False, "None": None}[node.id]
            raise ConfigError(f"{self.where}: name {node.id!r} is used before it is assigned")
        if isinstance(node, ast.List):
            return [self.evaluate(e) for e in node.elts]
        if isinstance(node, ast.Tuple):
            return tuple(self.evaluate(e) for e in node.elts)
        if isinstance(node, ast.Set):
            return {self.evaluate(e) for e in node.elts}
        if isinstance(node, ast.Dict):
            out = {}
            for key, value in zip(node.keys, node.values):
                if key is None:  # {**other}
                    out.update(self.evaluate(value))
                else:
                    out[self.evaluate(key)] = self.evaluate(value)
            return out
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
            out = {}
            for arg in node.args:
                out.update(self.evaluate(arg))
            for kw in node.keywords:
                if kw.arg is None:
                    out.update(self.evaluate(kw.value))
                else:
                    out[kw.arg] = self.evaluate(kw.value)
            return out
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = self.evaluate(node.operand)
            return -value if isinstance(node.op, ast.USub) else +value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPS:
            left, right = self.evaluate(node.left), self.evaluate(node.right)
            self._check_operation(node.op, left, right)
            result = _BINARY_OPS[type(node.op)](left, right)
            if isinstance(result, int) and result.bit_length() > MAX_INT_BITS:
                raise ConfigError(f"{self.where}: an integer of {result.bit_length()} bits; configs hold at most "
                                  f"{MAX_INT_BITS}")
            return result
        if isinstance(node, ast.Subscript):
            container = self.evaluate(node.value)
            return container[self.evaluate(node.slice)]
        what = ast.dump(node)[:80]
        raise ConfigError(f"{self.where}: expression not allowed in a config: {what}")

    def _check_operation(self, op: ast.operator, left: Any, right: Any) -> None:
        """Refuse, before computing it, an operation whose result would exceed the limits."""
        numbers = (int, float)
        if isinstance(op, ast.Pow) and isinstance(left, int) and isinstance(right, int) and right > 0:
            bits = right * math.log2(abs(left)) if abs(left) > 1 else 1
            if bits > MAX_INT_BITS:
                raise ConfigError(f"{self.where}: {left}**{right} has about {bits:.3g} bits; configs hold integers "
                                  f"of at most {MAX_INT_BITS}")
        elif isinstance(op, ast.Mult):
            if isinstance(left, int) and not isinstance(left, bool) and not isinstance(right, numbers):
                left, right = right, left
            if isinstance(left, (str, bytes, list, tuple)) and isinstance(right, int):
                per_item = 1 if isinstance(left, (str, bytes)) else max(1, _count(left))
                self.budget.spend(max(0, right) * per_item, f"{self.where}: a repetition")
        elif isinstance(op, ast.Mod) and isinstance(left, (str, bytes)):
            raise ConfigError(f"{self.where}: %-formatting is not allowed in a config")
        if isinstance(op, ast.Add) and isinstance(left, (str, bytes, list, tuple)):
            self.budget.spend(len(left) + (len(right) if hasattr(right, "__len__") else 0), self.where)


def _count(value: Any) -> int:
    """Values in ``value`` (already paid for when it was built, so this is cheap relative to the budget)."""
    if isinstance(value, dict):
        return 1 + sum(_count(k) + _count(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return 1 + sum(_count(v) for v in value)
    return 1


_BINARY_OPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a**b,
}


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
