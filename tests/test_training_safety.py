"""Issue 18: training never goes silently wrong and never loses data — non-finite losses/gradients/weights, atomic
checkpoints, resume fingerprints, output-dir locks, signals, a full disk, the launcher's rendezvous port."""

from __future__ import annotations

from hf_seg.training.launch import rendezvous_arguments


def test_relaunch_picks_a_free_port_unless_one_was_given():
    assert rendezvous_arguments(["accelerate", "launch", "--cpu", "--num_processes", "2"], {}) == ["--standalone"]
    assert rendezvous_arguments(["accelerate", "launch", "--main_process_port", "0"], {}) == ["--standalone"]
    given = rendezvous_arguments(["accelerate", "launch", "--main_process_port", "29611"], {"MASTER_ADDR": "10.0.0.2"})
    assert given == ["--master_addr", "10.0.0.2", "--master_port", "29611"]
