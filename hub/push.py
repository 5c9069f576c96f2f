"""Upload an exported folder to the Hugging Face Hub, with one clear message for each way it can fail.

Every failure says that the folder is complete and gives the command that pushes it later with the
installed huggingface_hub (``hf upload``; logging in is ``hf auth login``).
"""

from __future__ import annotations

import shlex

from huggingface_hub import HfApi, constants


def push_later(folder: str, repo_id: str, private: bool = False) -> str:
    """The sentence every push failure ends with."""
    command = f"hf upload {shlex.quote(repo_id)} {shlex.quote(folder)} ." + (" --private" if private else "")
    return f"The folder {folder} is ready; push it later with: {command}"


def push_to_hub(folder: str, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload ``folder`` to ``repo_id`` (created if needed); returns the commit URL."""
    later = push_later(folder, repo_id, private)
    if constants.HF_HUB_OFFLINE:
        raise ConnectionError(f"cannot push to {repo_id}: the Hub is switched off (HF_HUB_OFFLINE=1). {later} "
                              "(from a machine with access).")
    api = HfApi(token=token)
    try:
        api.whoami()
    except Exception as err:  # noqa: BLE001 - huggingface_hub raises several kinds here
        message = _first_line(err)
        if "401" in message or "Unauthorized" in message or "token" in message.lower():
            raise PermissionError(f"cannot push to {repo_id}: not logged in to the Hub ({message}). Log in with "
                                  f"`hf auth login` or set HF_TOKEN. {later}") from None
        raise ConnectionError(f"cannot push to {repo_id}: the Hub is not reachable ({message}). {later}") from None
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=folder, repo_id=repo_id, commit_message="Upload with blendkit")
    except Exception as err:  # noqa: BLE001 - permissions, quota, network: all reported the same way
        raise ConnectionError(f"cannot push to {repo_id}: {_first_line(err)}. {later}") from None
    return str(getattr(info, "commit_url", repo_id))


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0].rstrip(".") if str(err).strip() else type(err).__name__
