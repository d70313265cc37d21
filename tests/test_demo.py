"""hf-seg demo: the end-to-end run (shortened), its image-agnostic baseline and its pasteable rerun command."""

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hf_seg.data import custom_info
from hf_seg.demo import build_parser, finetune_argv, image_agnostic_baseline

ROOT = Path(__file__).resolve().parents[1]
CAMVID = ROOT / "demo_data" / "camvid"


def _row(labels):
    return {"annotation": Image.fromarray(np.asarray(labels, dtype=np.uint8))}


def test_baseline_is_the_most_common_training_label_at_each_pixel():
    info = custom_info(id2label={0: "a", 1: "b", 2: "c"})
    train = [_row([[0, 1], [2, 2]]), _row([[0, 1], [2, 1]]), _row([[1, 1], [2, 1]])]  # mode: [[0, 1], [2, 1]]
    test = [_row([[0, 1], [2, 1]]), _row([[0, 0], [0, 1]])]
    baseline = image_agnostic_baseline(train, test, info)
    assert baseline["pixel_accuracy"] == pytest.approx(6 / 8)
    # IoU = intersection / union: class 0: 2 / 4, class 1: 3 / 4, class 2: 1 / 2
    assert baseline["mean_iou"] == pytest.approx((2 / 4 + 3 / 4 + 1 / 2) / 3)


def test_the_rerun_command_pastes_into_a_shell(tmp_path):
    args = build_parser().parse_args(["--data", str(tmp_path / "a folder with spaces"), "--crop-size", "96", "128"])
    argv = finetune_argv(args, tmp_path / "model")
    command = shlex.join(["hf-seg", "finetune", *argv])
    assert shlex.split(command)[2:] == argv  # the JSON of --processor-kwargs and the spaces survive
    assert json.loads(argv[argv.index("--processor-kwargs") + 1]) == {"short_side": 120, "max_size": 160}


@pytest.mark.skipif(not (CAMVID / "train").is_dir(), reason="no demo_data/camvid")
def test_demo_runs_end_to_end_and_says_where_everything_is(tmp_path, capsys):
    from hf_seg.cli import main

    out = tmp_path / "demo"
    status = main(["demo", "--output-dir", str(out), "--max-steps", "2", "--batch-size", "2", "--crop-size", "48", "64",
                   "--short-side", "60", "--threads", "1"])
    printed = capsys.readouterr().out
    assert status == 0
    assert "RANDOM initial weights" in printed and "baseline: mIoU" in printed and "augmentation:" in printed
    rerun = next(line for line in printed.splitlines() if "the same training by hand: " in line)
    assert shlex.split(rerun.split("by hand: ", 1)[1])[:2] == ["hf-seg", "finetune"]
    results = json.loads((out / "demo_results.json").read_text())
    assert results["optimizer_steps"] == 2 and results["test_images"] == 10
    assert 0.0 <= results["test_mean_iou"] <= 1.0
    # the baseline on the bundled split (measured once: the same map for every image)
    assert results["baseline_pixel_accuracy"] == pytest.approx(0.6101, abs=1e-4)
    assert results["baseline_mean_iou"] == pytest.approx(0.1691, abs=1e-4)
    overlays = sorted((out / "predictions").glob("*_overlay.png"))
    assert len(overlays) == 10
    # a colour legend to the right of the overlays and of the grid (image | ground truth | prediction)
    assert Image.open(overlays[0]).width > 480 and Image.open(out / "predictions" / "grid.png").width > 3 * 320


def test_a_time_budget_shortens_the_progress_bar_too(monkeypatch):
    """When the budget cuts the run short, the bar counts to the steps that will run (an honest total and ETA)."""
    from types import SimpleNamespace

    from tqdm import tqdm
    from transformers import TrainerControl, TrainerState
    from transformers.trainer_callback import ProgressCallback

    from hf_seg.training import trainer as trainer_module

    clock = {"now": 0.0}
    monkeypatch.setattr(trainer_module.time, "perf_counter", lambda: clock["now"])
    progress = ProgressCallback()
    fake = SimpleNamespace(schedule_horizon={"max_steps": 2000}, callback_handler=SimpleNamespace(callbacks=[progress]))
    budget = trainer_module.TimeBudgetCallback(300, fake)
    state, control = TrainerState(max_steps=2000, is_world_process_zero=True), TrainerControl()
    progress.training_bar = tqdm(total=2000, disable=True)
    budget.on_train_begin(None, state, control)
    for step in range(1, 40):
        clock["now"] += 10.0  # every step takes 10 s: 30 of them fit in 300 s
        state.global_step = step
        budget.on_step_end(None, state, control)
        if control.should_training_stop:
            break
    assert budget.stop_at == 30 and state.global_step == 30
    assert state.max_steps == fake.schedule_horizon["max_steps"] == progress.training_bar.total == budget.stop_at
