"""Entry point of the ``hf-seg`` console script: the command line is parsed before hf_seg's package ``__init__`` runs.

``import hf_seg`` registers every family with transformers' Auto classes, which imports torch and transformers
(seconds). ``hf-seg --help``, ``--version``, ``hf-seg COMMAND --help`` and argument errors need none of it, so this
module makes ``hf_seg`` importable as a bare package (its submodules can be imported, its ``__init__`` has not run)
and hands over to :func:`hf_seg.cli.main`, which completes the import once a command is about to run. Importing
``hf_seg`` any other way is unchanged.
"""

from __future__ import annotations

import importlib.util
import sys

__all__ = ["main"]


def _defer_package_init() -> None:
    if "hf_seg" in sys.modules:
        return
    spec = importlib.util.find_spec("hf_seg")
    package = importlib.util.module_from_spec(spec)  # __path__ set: `import hf_seg.cli` works; __init__ not run
    sys.modules["hf_seg"] = package

    def complete() -> None:
        spec.loader.exec_module(package)

    package.__dict__["_complete_deferred_init"] = complete


def main(argv=None) -> int:
    _defer_package_init()
    from hf_seg.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
