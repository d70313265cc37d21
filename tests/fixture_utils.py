"""Locating parity fixtures and converting them with the CLI, shared by every family's tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = Path(__file__).resolve().parent / "fixtures"


def fixture_cases(family: str) -> list[Path]:
    """The bundled cases of ``family`` plus, when ``HF_SEG_FIXTURES`` points at a fixture set, all of its cases.

    A case is a folder with ``meta.json``; the same case name found in both places is taken once (the full set's).
    """
    cases: dict[str, Path] = {}
    for base in [BUNDLED, Path(os.environ["HF_SEG_FIXTURES"]) if os.environ.get("HF_SEG_FIXTURES") else None]:
        if base is None or not (base / family).is_dir():
            continue
        for case in sorted((base / family).iterdir()):
            if (case / "meta.json").is_file():
                cases[case.name] = case
    return [cases[name] for name in sorted(cases)]


def case_id(case: Path) -> str:
    return case.name


def load_case(case: Path) -> dict:
    data = {"meta": json.loads((case / "meta.json").read_text())}
    for name in ("input", "labels", "expected"):
        path = case / f"{name}.safetensors"
        data[name] = load_file(path) if path.is_file() else {}
    return data


def convert_with_cli(case: Path, output: Path, checkpoints=None, config=None) -> subprocess.CompletedProcess:
    """Run ``scripts/convert_original.py`` exactly as a user would."""
    checkpoints = checkpoints or sorted(str(p) for p in case.glob("*.pth"))
    config = config or next(p for p in (case / "config.py", case / "config.yaml") if p.is_file())
    cmd = [sys.executable, str(ROOT / "scripts" / "convert_original.py"), "--config", str(config),
           "--checkpoint", *map(str, checkpoints), "--output", str(output)]
    # the script must import this checkout's hf_seg even where the package is not pip-installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, name: str, rel: float = 1e-4) -> float:
    """Max abs diff relative to the expected tensor's scale; returns the absolute diff for reporting."""
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    diff = (actual.double() - expected.double()).abs().max().item()
    scale = max(expected.double().abs().max().item(), 1e-12)
    assert diff <= rel * scale, f"{name}: max abs diff {diff:.3g} > {rel:g} x scale {scale:.3g}"
    return diff
