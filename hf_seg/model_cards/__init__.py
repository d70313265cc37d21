"""Model cards for the zoo: one hub README per released row, generated from :mod:`hf_seg.zoo`.

A card carries ``model-index`` metadata (``huggingface_hub``'s ``ModelCardData``/``EvalResult``, which the hub renders
as an evaluation table) and a body with the seed's table row, the family's whole table for context, how to use and
evaluate the model, how it was converted and the parity evidence, the license and the citation.

What a card may claim:

* paper numbers are the ones the zoo copied from the seed's README/paper and are labelled as reported there;
* our own column says "not yet measured" until an evaluation JSON written by ``scripts/evaluate.py`` is attached
  (``model_cards/<name>/eval*.json``, or ``--eval-json`` of ``scripts/generate_model_cards.py`` /
  ``scripts/release.py``);
* release verification numbers come only from a ``parity.json`` written by ``scripts/release.py``.

``generate_cards(root)`` rewrites only the cards whose text changed, so regenerating is idempotent and cheap.
"""

from .card import (NOT_MEASURED, REPRODUCTION_CONFIG, REPRODUCTION_SOURCE, build_card, card_body, card_text,
                   evaluate_command, family_table, fmt, multi_scale_args, multi_scale_label, results_table,
                   test_protocol)
from .evaluations import MeasuredResult, parse_eval_json, read_eval_files
from .facts import Citation, DatasetFacts, FamilyFacts, dataset_facts, family_facts
from .index import INDEX_FILE, ZOO_COLUMNS, zoo_index_markdown, zoo_table_rows, zoo_table_text
from .sync import (CARD_FILE, EVAL_GLOB, PARITY_FILE, GenerateResult, attach_eval_json, attachments, card_dir,
                   generate_cards)
