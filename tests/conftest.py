import os
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))  # test helpers (fixture_utils, csail_reference) import as plain modules

torch.set_num_threads(min(2, torch.get_num_threads()))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return TESTS / "data"


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """case folder -> its CLI-converted folder, each case converted once per test session."""
    from fixture_utils import convert_with_cli

    cache = {}

    def get(case):
        if case not in cache:
            out = tmp_path_factory.mktemp(case.name)
            result = convert_with_cli(case, out)
            assert result.returncode == 0, result.stderr
            cache[case] = out
        return cache[case]

    return get


@pytest.fixture(scope="module")
def single_thread():
    """Tiny convolutions: OpenMP threads only add contention (badly so on a loaded 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
