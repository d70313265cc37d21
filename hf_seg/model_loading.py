"""The one way hf_seg turns a model name into a model and its image processor (public as :func:`hf_seg.zoo.load`).

A name is, in this order: an existing folder (``save_pretrained`` output, a converted or finetuned model), a zoo
preset (the row's architecture with RANDOM weights), or a hub id ``org/name`` (downloaded into the hub cache, then
read like a folder). Anything else is refused at once with the zoo's did-you-mean: a typo never reaches the network.

Two modes:

* ``"inference"`` (predict, evaluate, the demo's evaluation): every weight must come from the checkpoint. A missing
  or newly initialised tensor would make the model predict with random parts, so it is refused, as are NaN/inf
  weights and a folder without an image processor (its resize and mean/std are part of what the model expects).
* ``"finetune"``: the classifier may be built (preset) or re-initialised (``ignore_mismatched_sizes``) for the
  dataset's classes; tensors the checkpoint lacks are initialised and reported in ``notes``. NaN/inf weights and a
  missing image processor are refused here too.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

from .hub_or_path import looks_like_hub_id, no_network_message, similar_paths

__all__ = ["LoadedModel", "ModelLoadError", "check_name", "load"]

MODES = ("inference", "finetune")
# what the hub download fetches: configs (model, processor, sharded-weights index) and safetensors weights only
HUB_FILES = ["*.json", "*.safetensors"]
_MAX_LISTED = 8


class ModelLoadError(ValueError):
    """A model that cannot be loaded as asked; the message names what is missing or wrong, in one line."""


@dataclass
class LoadedModel:
    """What :func:`load` returns; unpacks as ``model, processor = load(...)``."""

    model: Any
    processor: Any
    source: str  # "preset" (random weights), "folder" or "hub"
    path: str  # the folder the weights came from ("" for a preset)
    entry: Any = None  # the zoo row, for a preset
    notes: list[str] = field(default_factory=list)

    def __iter__(self):
        return iter((self.model, self.processor))

    @property
    def random_weights(self) -> bool:
        return self.source == "preset"


def _listed(keys) -> str:
    keys = sorted(keys)
    more = f", ... ({len(keys)} in all)" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more


def check_name(name: str) -> str:
    """What ``name`` is: ``"folder"``, ``"preset"`` or ``"hub"`` (an ``org/name`` id, not looked up here); anything
    else raises :class:`ModelLoadError` with the zoo's did-you-mean. Needs neither torch nor the network, so the
    command line checks ``--model`` with it before the heavy imports."""
    from . import zoo

    if os.path.isdir(name):
        return "folder"
    if name in {e.name for e in zoo.list_models()}:
        return "preset"
    if os.path.exists(name):
        raise ModelLoadError(f"{name!r} is a file; a model is a folder (config.json, model.safetensors, "
                             f"preprocessor_config.json), a zoo name or a hub id")
    if looks_like_hub_id(name):
        return "hub"
    if os.sep in name or "/" in name or name.startswith((".", "~")):
        close = similar_paths(name)
        raise ModelLoadError(f"no folder {name!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
    try:
        zoo.get_entry(name)
    except KeyError as err:
        raise ModelLoadError(f"{name!r} is not a folder, and {err.args[0]}") from None
    raise AssertionError("unreachable: get_entry accepted a name the zoo does not list")


def _resolve(name: str) -> tuple[str, str]:
    """(kind, folder or preset name): :func:`check_name`, then a hub id is downloaded."""
    kind = check_name(name)
    return (kind, _download(name)) if kind == "hub" else (kind, name)


def _download(repo_id: str) -> str:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        return snapshot_download(repo_id, allow_patterns=HUB_FILES)
    except RepositoryNotFoundError:
        raise ModelLoadError(f"{repo_id!r} is not a local folder and the hub has no model repository of that name "
                             f"(or it is private: log in with `hf auth login`)") from None
    except (OSError, HfHubHTTPError) as err:
        message = no_network_message(repo_id, err)
        if message is None:
            raise ModelLoadError(f"cannot download {repo_id!r} from the hub: {err}".splitlines()[0]) from err
        raise ModelLoadError(message) from None


def _check_folder(folder: str, processor) -> None:
    files = set(os.listdir(folder))
    missing = []
    if "config.json" not in files:
        missing.append("config.json (the architecture)")
    if not files & {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                    "pytorch_model.bin.index.json"}:
        missing.append("model.safetensors (the weights)")
    if processor is None and "preprocessor_config.json" not in files:
        missing.append("preprocessor_config.json (the image processor: test-time resize, mean/std; save it with "
                       "processor.save_pretrained(folder))")
    if missing:
        raise ModelLoadError(f"{folder} is not a complete model folder: it has no {' and no '.join(missing)}")


def _check_finite(model, where: str) -> None:
    import torch

    bad = [name for name, tensor in (*model.named_parameters(), *model.named_buffers())
           if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if bad:
        raise ModelLoadError(f"{where} has NaN/inf weights in {len(bad)} tensors ({_listed(bad)}): the checkpoint is "
                             f"broken (e.g. a training run that diverged)")


def _saved_num_labels(folder: str) -> int | None:
    import json

    with open(os.path.join(folder, "config.json")) as handle:
        id2label = json.load(handle).get("id2label")
    return len(id2label) if id2label else None


def _label_names_match(config, names) -> bool:
    current = [str(config.id2label.get(i, config.id2label.get(str(i), ""))) for i in range(config.num_labels)]
    if all(n.startswith("LABEL_") for n in current):
        return True  # generic names carry no information
    return [n.lower() for n in current] == [str(n).lower() for n in names]


def _drop_load_report(record) -> bool:
    return "LOAD REPORT" not in str(record.msg)


def _load_folder(folder: str, name: str, mode: str, id2label, ignore_mismatched_sizes: bool, notes: list[str]):
    from transformers import AutoConfig, AutoModelForSemanticSegmentation

    import hf_seg  # noqa: F401 - registers the Auto classes

    kwargs: dict[str, Any] = {}
    if id2label is not None:
        config = AutoConfig.from_pretrained(folder)
        saved = _saved_num_labels(folder)
        if saved and saved != config.num_labels:  # a config class whose num_labels default beats the saved id2label
            config = AutoConfig.from_pretrained(folder, num_labels=saved)
        wanted = len(id2label)
        if config.num_labels != wanted and not ignore_mismatched_sizes:
            shown = ", ".join(list(id2label.values())[:6]) + (", ..." if wanted > 6 else "")
            raise ModelLoadError(f"the model {name!r} has a classifier for {config.num_labels} classes but the dataset "
                                 f"has {wanted} ({shown}): pass --ignore-mismatched-sizes to re-initialise the "
                                 f"classifier for the dataset's classes")
        if config.num_labels == wanted and not _label_names_match(config, id2label.values()):
            notes.append(f"the model's {wanted} class names differ from the dataset's; its classifier is kept and its "
                         f"labels renamed to the dataset's")
        elif config.num_labels != wanted:
            notes.append(f"classifier re-initialised for the dataset's {wanted} classes (the model had "
                         f"{config.num_labels})")
        kwargs = dict(num_labels=wanted, id2label=id2label, label2id={v: k for k, v in id2label.items()},
                      ignore_mismatched_sizes=ignore_mismatched_sizes)
    # transformers logs its own table of missing/unexpected keys; the checks below say the same, once, as an error
    # (inference) or a note (finetune)
    # (a filter, not a level: transformers runs extra checks when this logger's level is raised)
    quiet = logging.getLogger("transformers.modeling_utils")
    quiet.addFilter(_drop_load_report)
    try:
        model, info = AutoModelForSemanticSegmentation.from_pretrained(folder, output_loading_info=True, **kwargs)
    except RuntimeError as err:
        if "size mismatch" not in str(err):
            raise
        shapes = [line.strip() for line in str(err).splitlines() if "size mismatch" in line]
        raise ModelLoadError(f"{name!r}: the weights do not fit the architecture its config.json describes "
                             f"({'; '.join(shapes[:3])})") from None
    finally:
        quiet.removeFilter(_drop_load_report)
    missing = set(info.get("missing_keys") or ())
    if missing and mode == "inference":
        raise ModelLoadError(f"{name!r} lacks {len(missing)} weight tensors that would be randomly initialised "
                             f"({_listed(missing)}): predictions would be meaningless; finetune it first (or load it "
                             f"with mode='finetune')")
    if missing:
        notes.append(f"{len(missing)} tensors are not in the checkpoint and were newly initialised: {_listed(missing)}")
    if info.get("unexpected_keys"):
        warnings.warn(f"{name!r}: {len(info['unexpected_keys'])} tensors in the checkpoint are not used by the model "
                      f"({_listed(info['unexpected_keys'])})", stacklevel=3)
    return model


def load(name_or_path: str, mode: str = "inference", *, id2label: dict[int, str] | None = None,
         ignore_index: int | None = None, ignore_mismatched_sizes: bool = False, processor=None) -> LoadedModel:
    """Model and image processor from a folder, a zoo preset or a hub id (see the module docstring).

    Args:
        mode: ``"inference"`` refuses weights the checkpoint lacks; ``"finetune"`` allows a new classifier.
        id2label: (finetune) the dataset's classes: a preset is built with them, a folder's classifier must have as
            many (or ``ignore_mismatched_sizes`` re-initialises it) and its labels are renamed to them.
        ignore_index: (finetune, presets) the loss's ignore index.
        processor: use this image processor instead of the one saved with the model.

    Raises :class:`ModelLoadError` (one line, naming what is missing or wrong) for a name that is neither a folder,
    a zoo row nor a reachable hub id, an incomplete folder, missing tensors (inference) and NaN/inf weights.
    """
    from . import zoo

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    name = os.fspath(name_or_path)
    kind, where = _resolve(name)
    notes: list[str] = []
    if kind == "preset":
        entry = zoo.get_entry(name)
        overrides: dict[str, Any] = {}
        if id2label is not None:
            overrides = dict(id2label=id2label, label2id={v: k for k, v in id2label.items()}, num_labels=len(id2label))
        if ignore_index is not None:
            overrides["semantic_loss_ignore_index"] = ignore_index
        notes.append(f"{name!r} is a zoo preset: its architecture is built with RANDOM weights (no pretrained weights "
                     f"are downloaded); pass a converted folder or {entry.hub_id!r} for trained ones")
        if mode == "inference":
            warnings.warn(notes[-1], stacklevel=2)
        return LoadedModel(zoo.build_model(name, **overrides), processor or zoo.build_processor(name), "preset", "",
                           entry, notes)
    _check_folder(where, processor)
    model = _load_folder(where, name, mode, id2label, ignore_mismatched_sizes, notes)
    _check_finite(model, name)
    if processor is None:
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(where)
    return LoadedModel(model, processor, kind, where, None, notes)
