"""The wheel: built without setuptools warnings, with the console script's entry module and every data file the
package reads, and without the research-only sample images."""

import shutil
import subprocess
import sys
import zipfile

from fixture_utils import ROOT


def test_the_wheel_builds_quietly_and_carries_what_the_package_reads(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md", "hf_seg_cli.py"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "hf_seg", source / "hf_seg", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-w",
                             str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "warning" not in output.lower(), output[-5000:]
    (wheel,) = (tmp_path / "dist").glob("hf_seg-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "hf_seg_cli.py" in names and "hf_seg/version.py" in names
    for data in ("hf_seg/label_sets.json", "hf_seg/kernels/csrc/msda_cpu.cpp", "hf_seg/metrics/mean_iou/mean_iou.py"):
        assert data in names, data
    assert any(n.startswith("hf_seg/modeling/") and n.endswith("presets.json") for n in names)
    assert not any(n.startswith(("demo_data/", "tests/")) for n in names)
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "hf-seg = hf_seg_cli:main" in entry_points
