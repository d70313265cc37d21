"""Issue 18: training never goes silently wrong and never loses data — non-finite losses/gradients/weights, atomic
checkpoints, resume fingerprints, one run per output folder, signals, a full disk, the launcher's rendezvous port.

Each test reproduces a failure seen before (described in its docstring) on the tiny SeMask model and CamVid samples.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

import hf_seg  # noqa: F401  (registers the Auto classes)
from hf_seg import HfSegImageProcessor
from hf_seg.label_sets import get_label_set
from hf_seg.modeling.semask import SeMaskForSemanticSegmentation
from hf_seg.modeling.semask import tiny_config as semask_tiny_config
from hf_seg.training.checkpoints import MARKER, STAGING, checkpoint_problem
from hf_seg.training.finetune import main as finetune_main
from hf_seg.training.launch import rendezvous_arguments
from hf_seg.training.run_guard import LOCK_NAME, OutputDirLock

ROOT = Path(__file__).resolve().parents[1]
CAMVID = Path(__file__).resolve().parent / "data" / "camvid"
FAST = ["--dataset", str(CAMVID), "--train-scale", "128", "96", "--crop-size", "64", "--per-device-train-batch-size",
        "2", "--gradient-accumulation-steps", "1", "--recipe", "finetune", "--report-to", "none", "--disable-tqdm",
        "true", "--check-samples", "2", "--dataloader-num-workers", "0", "--eval-split", "none", "--seed", "1"]


def save_model(path: Path, **overrides) -> Path:
    labels = get_label_set("camvid").id2label
    config = semask_tiny_config(num_labels=len(labels), id2label=dict(labels),
                                label2id={v: k for k, v in labels.items()}, **overrides)
    torch.manual_seed(0)
    SeMaskForSemanticSegmentation(config).save_pretrained(path)
    HfSegImageProcessor(resize_mode="fixed", size={"height": 64, "width": 64}).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_model(tmp_path_factory.mktemp("tiny_semask"))


def finetune(model, out, *extra, callbacks=None) -> int:
    return finetune_main(["--model", str(model), "--output-dir", str(out), *FAST, *map(str, extra)],
                         callbacks=callbacks)


def complete(checkpoint: Path) -> bool:
    return checkpoint.is_dir() and checkpoint_problem(checkpoint) is None


def finite(path: Path) -> bool:
    return all(torch.isfinite(t).all() for t in load_file(path).values() if t.is_floating_point())


class At(TrainerCallback):
    """Runs ``action(model)`` at the beginning (``when='begin'``) or end of optimizer step ``step`` (1-based)."""

    def __init__(self, step: int, action, when: str = "begin"):
        self.step, self.action, self.when = step, action, when

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if self.when == "begin" and state.global_step + 1 == self.step:
            self.action(model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.when == "end" and state.global_step == self.step:
            self.action(model)


def poison_weight(model):
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")


# ------------------------------------------------------------------------------------------------ non-finite
def test_non_finite_loss_stops_training_naming_the_step(model_dir, tmp_path, capsys):
    """Before: a model gone NaN trained on (``grad_norm: nan``, then ``loss: 0``), saved NaN weights, exit 0."""
    out = tmp_path / "run"
    rc = finetune(model_dir, out, "--max-steps", "4", "--save-steps", "1", callbacks=[At(3, poison_weight)])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "step 3: the loss is nan" in err and "--skip-nonfinite-steps" in err, err
    assert complete(out / "checkpoint-2") and finite(out / "checkpoint-2" / "model.safetensors")
    assert not (out / "checkpoint-3").exists() and not (out / "model.safetensors").exists()


def test_weights_holding_nan_are_never_saved(model_dir, tmp_path, capsys):
    """Before: 258 of 265 saved tensors were NaN/inf. A NaN that reaches the weights without a NaN gradient (here
    put there after the update) is caught by the check before every save."""
    out = tmp_path / "run"
    rc = finetune(model_dir, out, "--max-steps", "3", "--save-steps", "2",
                  callbacks=[At(2, poison_weight, when="end")])
    err = capsys.readouterr().err
    assert rc == 1 and "refusing to save" in err and "NaN/inf" in err, err
    assert not (out / "checkpoint-2").exists() and not (out / "model.safetensors").exists()


def test_skip_nonfinite_steps_skips_the_update_and_restores_batchnorm_statistics(model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    handles = []

    def nan_activations(model):  # one step's forward produces NaN early in the network (BatchNorm sees it)
        first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        handles.append(first.register_forward_hook(lambda module, args, output: output * float("nan")))

    def stop_nan(model):
        handles.pop().remove()

    rc = finetune(model_dir, out, "--max-steps", "3", "--save-strategy", "no", "--skip-nonfinite-steps",
                  callbacks=[At(2, nan_activations), At(3, stop_nan)])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "step 2: the loss is nan" in err and "update skipped" in err, err
    assert finite(out / "model.safetensors")


@pytest.mark.slow
@pytest.mark.ci
def test_semask_t_finetune_on_a_zero_padded_crop_has_finite_loss_and_gradients(tmp_path, capsys):
    """Before (bbae1ec): the released SeMask-T size finetuned on CamVid images zero-padded to the crop logged
    ``grad_norm`` 1.7e13 here (inf at a 256 crop, NaN weights saved at 512) and exited 0 (now: 1.8). The
    README's command, two steps, images small enough that most of every crop is padding."""
    out = tmp_path / "run"
    rc = finetune_main(["--model", "semask-t-fpn-ade20k-512", "--dataset", str(CAMVID), "--output-dir", str(out),
                        "--train-scale", "40", "32", "--crop-size", "128", "--no-augmentation",
                        "--per-device-train-batch-size", "2", "--gradient-accumulation-steps", "1",
                        "--recipe", "finetune", "--max-steps", "2", "--logging-steps", "1", "--save-strategy", "no",
                        "--eval-split", "none", "--report-to", "none", "--disable-tqdm", "true",
                        "--dataloader-num-workers", "0", "--seed", "0"])
    assert rc == 0, capsys.readouterr().err  # a non-finite loss or gradient would have stopped it (exit 1)
    logged = [h for h in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    assert len(logged) == 2
    for entry in logged:
        assert np.isfinite(entry["loss"]) and np.isfinite(entry["grad_norm"]), logged
        assert entry["grad_norm"] < 1e3, logged  # padding adds ignored pixels; it must not blow gradients up
    assert finite(out / "model.safetensors")


# ------------------------------------------------------------------------------------------------ checkpoints
def test_checkpoint_cut_short_is_never_resumed(model_dir, tmp_path, monkeypatch, capsys):
    """Before: a kill while checkpoint-4 was written left a half checkpoint-4, and ``--resume-from-checkpoint last``
    then always crashed on it. Now the cut write stays in the staging folder, ``last`` is the newest complete
    checkpoint, and a ``checkpoint-N`` without its completion marker (or with a truncated file) is passed over."""
    from hf_seg.training.trainer import SegmentationTrainer

    out = tmp_path / "run"
    original = SegmentationTrainer._save_optimizer_and_scheduler

    def killed_during_checkpoint_4(self, output_dir):
        if self.state.global_step == 4:
            raise SystemExit("killed")  # as a kill -9 would, after the weights were written
        return original(self, output_dir)

    monkeypatch.setattr(SegmentationTrainer, "_save_optimizer_and_scheduler", killed_during_checkpoint_4)
    with pytest.raises(SystemExit):
        finetune(model_dir, out, "--max-steps", "6", "--save-steps", "2")
    monkeypatch.undo()
    assert complete(out / "checkpoint-2") and not (out / "checkpoint-4").exists()
    assert (out / STAGING / "checkpoint-4" / "model.safetensors").is_file()  # the cut write, out of the way
    # a copy cut short (no marker), and one with a truncated weights file: both passed over
    for name, damage in (("checkpoint-8", "marker"), ("checkpoint-9", "truncate")):
        (out / name).mkdir()
        for item in (out / "checkpoint-2").iterdir():
            (out / name / item.name).write_bytes(item.read_bytes())
        if damage == "marker":
            (out / name / MARKER).unlink()
        else:
            weights = out / name / "model.safetensors"
            weights.write_bytes(weights.read_bytes()[:1000])
    capsys.readouterr()
    assert finetune(model_dir, out, "--max-steps", "6", "--save-steps", "2", "--resume-from-checkpoint", "last") == 0
    printed = capsys.readouterr().out
    assert "checkpoint-9/model.safetensors is 1000 bytes" in printed and "checkpoint-8 has no completion" in printed
    assert f"resuming from {out / 'checkpoint-2'}" in printed
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 6
    assert complete(out / "checkpoint-6") and not (out / STAGING).exists()
    # an explicitly named incomplete checkpoint is refused, naming the complete one
    rc = finetune(model_dir, out, "--max-steps", "6", "--resume-from-checkpoint", out / "checkpoint-8")
    assert rc == 1 and "no completion marker" in capsys.readouterr().err


def _disk_full_on_call(monkeypatch, call: int):
    """Make the ``call``-th weights write fail as a full disk does."""
    import transformers.modeling_utils as modeling_utils

    original = modeling_utils.safe_save_file
    count = {"n": 0}

    def full(*args, **kwargs):
        count["n"] += 1
        if count["n"] == call:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(*args, **kwargs)

    monkeypatch.setattr(modeling_utils, "safe_save_file", full)


def test_disk_full_keeps_the_previous_checkpoint_and_says_so(model_dir, tmp_path, monkeypatch, capsys):
    """Before: ``basic_ios::clear: iostream error``, a half-written checkpoint, and lost weights when the final save
    hit it."""
    out = tmp_path / "run"
    _disk_full_on_call(monkeypatch, 2)  # checkpoint-2 is written, checkpoint-4 is not
    assert finetune(model_dir, out, "--max-steps", "4", "--save-steps", "2") == 1
    err = capsys.readouterr().err
    assert "could not write checkpoint-4" in err and "no space left on device" in err, err
    assert "checkpoint-2, is kept" in err and "--resume-from-checkpoint last" in err, err
    assert complete(out / "checkpoint-2") and not (out / "checkpoint-4").exists()
    assert not (out / STAGING / "checkpoint-4").exists()  # the failed write's space is given back
    # the final save: checkpoint-2 has the trained weights, and says so
    out = tmp_path / "final"
    monkeypatch.undo()
    _disk_full_on_call(monkeypatch, 2)
    assert finetune(model_dir, out, "--max-steps", "2", "--save-steps", "2") == 1
    err = capsys.readouterr().err
    assert "could not write the model" in err and "no space left on device" in err and "checkpoint-2" in err, err
    assert complete(out / "checkpoint-2") and not (out / "model.safetensors").exists()


def test_torch_save_iostream_error_on_a_full_disk_is_named(tmp_path, monkeypatch):
    from hf_seg.training import checkpoints

    error = RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 1024 vs 512\n"
                         "basic_ios::clear: iostream error")
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", lambda _: type("usage", (), {"free": 4096})())
    assert "no space left on device" in checkpoints.write_failure_message("checkpoint-4", tmp_path, error)
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", lambda _: type("usage", (), {"free": 1 << 40})())
    assert "no space left" not in checkpoints.write_failure_message("checkpoint-4", tmp_path, error)


# ------------------------------------------------------------------------------------------------ runs and resume
def test_second_run_in_the_same_folder_is_refused(model_dir, tmp_path, capsys):
    """Before: a second finetune into a folder silently resumed (or overwrote) the first run; both exited 0."""
    out = tmp_path / "run"
    assert finetune(model_dir, out, "--max-steps", "2", "--save-steps", "2") == 0
    record = json.loads((out / "hf_seg_run.json").read_text())
    assert record["status"] == "complete" and record["fingerprint"]["model"] == str(model_dir)
    capsys.readouterr()
    assert finetune(model_dir, out, "--max-steps", "2") == 1
    err = capsys.readouterr().err
    assert "already holds a training run" in err and "--overwrite-output-dir" in err, err
    # another process writing the folder right now
    with OutputDirLock(out):
        assert finetune(model_dir, out, "--max-steps", "2", "--overwrite-output-dir") == 1
        err = capsys.readouterr().err
        assert f"in use by another finetune (pid {os.getpid()}" in err, err
    # a lock left by a killed run is stale: it is taken over
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom hf_seg.training.run_guard import "
                               f"OutputDirLock\nOutputDirLock({str(out)!r}).acquire()\nprint('locked', flush=True)\n"
                               "time.sleep(600)"], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait()
    assert (out / LOCK_NAME).is_file()
    assert finetune(model_dir, out, "--max-steps", "1", "--save-steps", "1", "--overwrite-output-dir") == 0
    printed = capsys.readouterr()
    assert f"took over the lock of an earlier run that is no longer running (pid {holder.pid})" in printed.out
    assert not (out / "checkpoint-2").exists() and complete(out / "checkpoint-1")
    assert not (out / LOCK_NAME).exists()


def test_resume_refuses_another_model_or_other_settings(model_dir, tmp_path, capsys):
    """Before: resuming a --save-only-model checkpoint with another --model trained a randomly initialised model and
    exited 0 (with optimizer state: an optimizer-group error that did not say the model differs)."""
    out = tmp_path / "run"
    assert finetune(model_dir, out, "--max-steps", "1", "--save-steps", "1", "--save-only-model") == 0
    other = save_model(tmp_path / "other", decoder_channels=16)
    capsys.readouterr()
    assert finetune(other, out, "--max-steps", "2", "--resume-from-checkpoint", "last") == 1
    err = capsys.readouterr().err
    assert "written by another run" in err and f"model: checkpoint {str(model_dir)!r}, this run {str(other)!r}" in err
    assert "architecture:" in err, err
    # forced, the weights themselves still do not fit: refused, never trained from a random initialisation
    assert finetune(other, out, "--max-steps", "2", "--resume-from-checkpoint", "last", "--force-resume") == 1
    err = capsys.readouterr().err
    assert "are not this model's" in err and "with other shapes" in err, err
    # same model, other settings: the differences are named; --force-resume continues anyway
    assert finetune(model_dir, out, "--max-steps", "2", "--learning-rate", "1e-3",
                    "--resume-from-checkpoint", "last") == 1
    err = capsys.readouterr().err
    assert "training.max_steps: checkpoint 1, this run 2" in err and "training.lr:" in err, err
    assert finetune(model_dir, out, "--max-steps", "2", "--resume-from-checkpoint", "last", "--force-resume") == 0
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2


# ------------------------------------------------------------------------------------------------ signals
def test_sigterm_saves_a_complete_checkpoint_and_exits_cleanly(model_dir, tmp_path, capsys):
    """Before: SIGINT/SIGTERM left half-written checkpoints (10 of 17 interruptions), after which resume crashed."""
    out = tmp_path / "run"
    terminate = At(2, lambda model: os.kill(os.getpid(), signal.SIGTERM), when="end")
    rc = finetune(model_dir, out, "--max-steps", "5", "--save-steps", "100", callbacks=[terminate])
    printed = capsys.readouterr()
    assert rc == 128 + signal.SIGTERM, printed.err
    assert "stopped by SIGTERM after step 2" in printed.out
    assert complete(out / "checkpoint-2") and not (out / "model.safetensors").exists()
    assert json.loads((out / "hf_seg_run.json").read_text())["status"] == "interrupted"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored
    assert finetune(model_dir, out, "--max-steps", "5", "--save-steps", "100", "--resume-from-checkpoint",
                    "last") == 0
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 5
    assert finite(out / "model.safetensors")


def test_sigint_is_caught_once_and_the_second_one_interrupts():
    from hf_seg.training.trainer import GracefulStop

    said = []
    with GracefulStop(said.append) as stop:
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt: the step finishes, then a checkpoint
        assert stop.received == signal.SIGINT and "SIGINT received" in said[0]
        with pytest.raises(KeyboardInterrupt):  # asked twice: at once
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ------------------------------------------------------------------------------------------------ data and arguments
def _small_camvid(root: Path, count: int = 4) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "trainannot"):
        (root / split).mkdir(parents=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(root / "train" / f"a{i}.png")
        Image.fromarray(np.full((40, 50), i % 11, np.uint8)).save(root / "trainannot" / f"a{i}.png")
    return root


def _finetune_on(model, data, out, *extra) -> int:
    args = [a for a in FAST if a not in ("--dataset", str(CAMVID))]
    return finetune_main(["--model", str(model), "--dataset", str(data), "--output-dir", str(out), *args,
                          "--max-steps", "2", "--save-strategy", "no", *map(str, extra)])


def test_float_labels_are_refused_not_truncated(model_dir, tmp_path, capsys):
    """Before: float label maps trained as their truncated values (2.7 -> class 2), exit 0."""
    import datasets
    from PIL import Image

    rng = np.random.default_rng(0)
    labels = [np.full((40, 50), 2.0, np.float32) for _ in range(4)]
    labels[3][5:9] = 2.7
    features = datasets.Features({"image": datasets.Image(), "annotation": datasets.Array2D((40, 50), "float32")})
    images = [Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)) for _ in labels]
    data = tmp_path / "float_labels"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"image": images, "annotation": labels},
                                                              features=features)}).save_to_disk(str(data))
    (data / "id2label.json").write_text(json.dumps({str(k): v for k, v in get_label_set("camvid").id2label.items()}))
    assert _finetune_on(model_dir, data, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "train row 3" in err and "non-integer values (e.g. 2.7)" in err, err


def test_unreadable_training_image_is_named(model_dir, tmp_path, capsys):
    """Before: a raw ``OSError: Truncated File Read`` traceback that did not say which file."""
    data = _small_camvid(tmp_path / "camvid")
    broken = data / "train" / "a2.png"
    broken.write_bytes(broken.read_bytes()[:60])
    # checked before training
    assert _finetune_on(model_dir, data, tmp_path / "a", "--check-samples", "-1") == 2
    err = capsys.readouterr().err
    assert f"train row 2 ({broken}, " in err and "cannot read it" in err, err
    # not among the checked rows: found while training, still named
    assert _finetune_on(model_dir, data, tmp_path / "b", "--check-samples", "1") == 2
    err = capsys.readouterr().err
    assert f"training row 2 ({broken}, " in err and "Traceback" not in err, err


def test_images_without_annotation_are_counted_not_dropped_silently(model_dir, tmp_path, capsys):
    """Before: images of a folder layout without an annotation file were left out of training without a word."""
    data = _small_camvid(tmp_path / "camvid", count=5)
    (data / "trainannot" / "a4.png").unlink()
    assert _finetune_on(model_dir, data, tmp_path / "out") == 0
    out = capsys.readouterr().out
    assert (f"note: 1 image(s) of the train split have no annotation file and are left out "
            f"(e.g. {data / 'train' / 'a4.png'})") in out, out
    assert "(camvid, 4 train)" in out, out
    assert any("1 image(s) of the train split" in note for note in
               json.loads((tmp_path / "out" / "recipe.json").read_text())["notes"])


def test_impossible_arguments_are_refused_before_anything_runs(model_dir, tmp_path, capsys):
    """Before: ``--processor-kwargs '{"pad_size_divisor": -8}'`` trained and saved a model predict could not load;
    zero or negative counts, steps and sizes were accepted."""
    data = _small_camvid(tmp_path / "camvid")
    assert _finetune_on(model_dir, data, tmp_path / "a", "--processor-kwargs", '{"pad_size_divisor": -8}') == 2
    err = capsys.readouterr().err
    assert "--processor-kwargs: pad_size_divisor must be a positive integer, got -8" in err, err
    assert not (tmp_path / "a" / "model.safetensors").exists()
    for flag, value in (("--per-device-train-batch-size", "0"), ("--gradient-accumulation-steps", "0"),
                        ("--save-steps", "-3"), ("--max-steps", "0"), ("--crop-size", "-64"),
                        ("--dataloader-num-workers", "-1"), ("--learning-rate", "-1"), ("--ratio-range", "2 1")):
        with pytest.raises(SystemExit) as exit_info:
            finetune_main(["--model", str(model_dir), "--dataset", str(data), "--output-dir", str(tmp_path / "b"),
                           flag, *value.split()])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "error: argument" in err and flag.lstrip("-").replace("-", "_") in err.replace("-", "_"), err
    assert not (tmp_path / "b").exists()


# ------------------------------------------------------------------------------------------------ launcher
def test_relaunch_picks_a_free_port_unless_one_was_given():
    assert rendezvous_arguments(["accelerate", "launch", "--cpu", "--num_processes", "2"], {}) == ["--standalone"]
    assert rendezvous_arguments(["accelerate", "launch", "--main_process_port", "0"], {}) == ["--standalone"]
    given = rendezvous_arguments(["accelerate", "launch", "--main_process_port", "29611"], {"MASTER_ADDR": "10.0.0.2"})
    assert given == ["--master_addr", "10.0.0.2", "--master_port", "29611"]


def test_a_pushed_run_keeps_its_local_state_off_the_hub():
    """The files upload_folder sends (huggingface_hub's own filter) are the model's, not the lock, the run record,
    staged or finished checkpoints or logs."""
    from huggingface_hub.utils import filter_repo_objects

    from hf_seg.training.checkpoints import STAGING
    from hf_seg.training.finetune import PUSH_IGNORE
    from hf_seg.training.run_guard import LOCK_NAME, RUN_RECORD

    model = ["config.json", "model.safetensors", "preprocessor_config.json", "README.md", "recipe.json"]
    local = [LOCK_NAME, RUN_RECORD, f"{STAGING}/checkpoint-4/model.safetensors", "checkpoint-2/model.safetensors",
             "runs/events.out.tfevents"]
    assert sorted(filter_repo_objects(model + local, ignore_patterns=list(PUSH_IGNORE))) == sorted(model)
