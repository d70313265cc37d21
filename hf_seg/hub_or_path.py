"""Local path or hub id? One rule for models and datasets, and one-line messages when a name is neither.

A name that exists locally is a path. Otherwise only ``org/name`` (one slash, the hub's characters, and a first part
that is not a local folder) is a hub id. Anything else is a mistyped path or name: the caller says so at once, with
similar names, instead of asking the hub, which without a network retries for half a minute and ends in a traceback.
Hub failures that come from a missing or disabled network are reported as ``"no network: ..."`` in one line.
"""

from __future__ import annotations

import difflib
import os
import re

__all__ = ["looks_like_hub_id", "similar_paths", "no_network_message", "check_hub_reachable"]

_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def looks_like_hub_id(name: str) -> bool:
    """``org/name`` whose ``org`` is not a local folder (``runs/modle`` next to a ``runs/`` folder is a typo)."""
    return bool(_HUB_ID.fullmatch(name)) and not name.startswith(".") and not os.path.isdir(name.split("/")[0])


def similar_paths(name: str, n: int = 3) -> list[str]:
    """Existing paths next to a missing one whose names are close to it (the did-you-mean of a mistyped path)."""
    parent, base = os.path.split(os.path.normpath(name))
    try:
        siblings = os.listdir(parent or ".")
    except OSError:
        return []
    return [os.path.join(parent, match) for match in difflib.get_close_matches(base, siblings, n=n)]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def no_network_message(name: str, err: BaseException) -> str | None:
    """``"no network: ..."`` when ``err`` (or what caused it) is a failed or disabled connection, else None."""
    chain, seen = err, []
    while chain is not None and len(seen) < 8:
        seen.append(chain)
        chain = chain.__cause__ or chain.__context__
    if _offline() or any(type(e).__name__ == "OfflineModeIsEnabled" for e in seen):
        return f"no network: {name!r} is not in the local hub cache and HF_HUB_OFFLINE is set"
    connection = next((e for e in seen if isinstance(e, (ConnectionError, TimeoutError))
                       or "Connect" in type(e).__name__ or "Timeout" in type(e).__name__), None)
    if connection is None:
        return None
    reason = str(connection).strip().splitlines()[0] if str(connection).strip() else type(connection).__name__
    return (f"no network: cannot reach the hub for {name!r} ({reason}); set HF_HUB_OFFLINE=1 to use a copy in the "
            f"local hub cache")


def check_hub_reachable(repo_id: str, repo_type: str) -> str | None:
    """None when the hub knows ``repo_id`` (or HF_HUB_OFFLINE asks for the local cache), else a one-line reason.

    One request without retries, so that a missing network is reported in a fraction of a second (libraries that
    download files retry each request for many seconds first).
    """
    if _offline():
        return None
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        HfApi().repo_info(repo_id, repo_type=repo_type)
    except RepositoryNotFoundError:
        return f"the hub has no {repo_type} {repo_id!r} (or it is private: log in with `hf auth login`)"
    except Exception as err:  # noqa: BLE001 - every other failure is reported, network ones as "no network"
        return no_network_message(repo_id, err) or f"cannot reach {repo_id!r} on the hub: {err}".splitlines()[0]
    return None
