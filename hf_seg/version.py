"""hf_seg's version: one literal, read by setup.cfg (statically) and by ``hf-seg --version`` without importing torch."""

__version__ = "0.1.0"
