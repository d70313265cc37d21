"""Uploading a folder to the Hugging Face Hub: the one push of the package (zoo releases and finetuned models)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# what a finetuning run writes besides the model: resumable checkpoints and logs stay local
TRAINING_STATE = ("checkpoint-*", "checkpoint-*/**", "runs/**", "*.pt")


def push_folder(folder: str | Path, repo_id: str, token: str | None = None, private: bool | None = None,
                commit_message: str = "Upload with hf_seg", ignore_patterns: Sequence[str] = (), api=None) -> str:
    """Create the model repo ``repo_id`` if needed and upload ``folder`` (less ``ignore_patterns``); returns its URL.
    ``api`` replaces ``huggingface_hub.HfApi(token=token)`` (tests)."""
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    url = api.create_repo(repo_id, repo_type="model", exist_ok=True, private=private)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model", commit_message=commit_message,
                      ignore_patterns=list(ignore_patterns) or None)
    return str(url) if url else f"https://huggingface.co/{repo_id}"
