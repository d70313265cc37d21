"""The plug-in structure: every family declares the interface of ``hf_seg.families``, shared code names no family,
imports run family -> shared only, and ``import hf_seg`` registers everything without importing model code."""

from __future__ import annotations

import ast
import io
import json
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

from hf_seg.configuration_utils import HfSegConfig
from hf_seg.conversion import OriginalConverter
from hf_seg.families import Family, families, family_module, family_names

PACKAGE = Path(__file__).resolve().parents[1] / "hf_seg"
FAMILY_DIRS = {name: PACKAGE / "modeling" / name for name in families()}

# words that name a family, one of its variants or its original code (lower case; matched inside identifiers and
# string literals). Dataset and backbone names (ade20k, vit, swin, deit, resnet) are no family's.
FAMILY_WORDS = ("csail", "mit_semseg", "setr", "hlg", "regionproxy", "region_proxy", "regproxy", "unept", "un-ept",
                "un_ept", "dt_offset", "semask")

def _shared_modules() -> list[Path]:
    inside = [d.resolve() for d in FAMILY_DIRS.values()]
    return sorted(p for p in PACKAGE.rglob("*.py") if not any(d in p.resolve().parents for d in inside))


def _code_words(path: Path) -> list[tuple[int, str]]:
    """(line, token) of identifiers and string literals, leaving out comments and docstrings (which may say where a
    convention comes from)."""
    source = path.read_text()
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                    first.value.value, str):
                docstrings.add(first.lineno)
    words = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.NAME or (token.type == tokenize.STRING and token.start[0] not in docstrings):
            words.append((token.start[0], token.string))
    return words


def _family_words_in(path: Path) -> list[str]:
    return [f"{path.relative_to(PACKAGE)}:{line}: {text[:80]}" for line, text in _code_words(path)
            if any(word in text.lower() for word in FAMILY_WORDS)]


def test_shared_code_names_no_family():
    found = [hit for path in _shared_modules() for hit in _family_words_in(path)]
    assert not found, "shared modules name a family (ask hf_seg.families instead):\n" + "\n".join(found)


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = f"{base}.{node.module}" if node.level and node.module else base if node.level else node.module
            out.append((node.lineno, target))
            out += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return out


def _family_of_module(name: str) -> str | None:
    parts = name.split(".")
    if parts[:2] == ["hf_seg", "modeling"] and len(parts) > 2 and parts[2] in FAMILY_DIRS:
        return parts[2]
    return None


def test_imports_run_from_families_to_shared_code_only():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        here = _family_of_module(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        for line, target in _imported_modules(path):
            there = _family_of_module(target)
            if there is not None and there != here:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_folder_names_are_the_families():
    assert family_names() == sorted(families())


@pytest.mark.parametrize("name", sorted(FAMILY_DIRS))
def test_family_declares_the_interface(name):
    family = families()[name]
    assert isinstance(family, Family) and family.name == name
    assert issubclass(family.config_class, HfSegConfig)
    model_class = family.model_class
    assert model_class.__name__ == family.model_class_name and model_class.config_class is family.config_class
    converter = family.converter_class
    assert issubclass(converter, OriginalConverter) and converter.family == name
    for hook in ("processor", "recipes", "recipe_rows", "recipe_for", "recipe_from_original", "loss_weights",
                 "training_targets", "original_logits"):
        if getattr(family, hook) is not None:
            assert family.hook(hook) is not None, hook
    # the backbone prefixes name top-level modules of the model, and together they hold parameters
    model = model_class(family_module(name).tiny_config())
    children = dict(model.named_children())
    assert set(family.backbone_prefixes) <= set(children), (family.backbone_prefixes, sorted(children))
    assert any(p.numel() for prefix in family.backbone_prefixes for p in children[prefix].parameters())


def test_import_hf_seg_imports_no_model_code():
    """Configs are registered at import; model code, timm, custom ops and transformers' image utilities (which import
    torchvision and torch._dynamo) only on first use. Processors are registered as soon as AutoImageProcessor exists."""
    script = """
import json, sys
import hf_seg
from transformers import AutoConfig
from hf_seg.families import families
for family in families().values():
    assert isinstance(AutoConfig.for_model(family.model_type), family.config_class)
print(json.dumps(sorted(sys.modules)))
from transformers import AutoImageProcessor
from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING
for family in families().values():
    assert set(IMAGE_PROCESSOR_MAPPING[family.config_class].values()) == {family.processor_class}, family.name
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.splitlines()[-1])
    heavy = [m for m in loaded if m.split(".")[0] in ("timm", "mit_semseg", "torchvision")
             or m.startswith(("hf_seg.kernels", "transformers.image_utils", "transformers.modeling_utils"))
             or (_family_of_module(m) and m.rpartition(".")[2].startswith(("modeling_", "convert_", "original")))]
    assert not heavy, heavy


def test_auto_classes_load_the_model_class_on_first_use():
    from transformers import AutoModelForSemanticSegmentation

    family = next(iter(families().values()))
    model = AutoModelForSemanticSegmentation.from_config(family_module(family.name).tiny_config())
    assert type(model) is family.model_class
    assert AutoModelForSemanticSegmentation._model_mapping[family.config_class] is family.model_class


def test_pipeline_does_not_call_our_models_unsupported(tmp_path):
    import numpy as np
    from PIL import Image
    from transformers import pipeline
    from transformers.testing_utils import CaptureLogger
    from transformers.utils import logging

    family = next(iter(families().values()))
    model = family.model_class(family_module(family.name).tiny_config()).eval()
    model.save_pretrained(tmp_path)
    family.processor_class(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    with CaptureLogger(logging.get_logger("transformers.pipelines.base")) as captured:
        segmenter = pipeline("image-segmentation", model=str(tmp_path))
    assert segmenter(Image.fromarray(np.zeros((24, 40, 3), np.uint8)), subtask="semantic")
    assert "is not supported" not in captured.out, captured.out
