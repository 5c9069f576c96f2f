"""Every way a push can fail says the folder is ready and gives the `hf upload` command that pushes it later."""

from __future__ import annotations

import pytest

from blendkit.hub import push


class _FakeApi:
    whoami_error: Exception | None = None
    upload_error: Exception | None = None

    def __init__(self, token=None):
        pass

    def whoami(self):
        if self.whoami_error:
            raise self.whoami_error

    def create_repo(self, *args, **kwargs):
        pass

    def upload_folder(self, **kwargs):
        if self.upload_error:
            raise self.upload_error
        return type("Info", (), {"commit_url": "https://hub/commit/1"})()


@pytest.mark.parametrize("case, error_type, reason", [
    ("offline", ConnectionError, "HF_HUB_OFFLINE=1"),
    ("logged out", PermissionError, "hf auth login"),
    ("no network", ConnectionError, "not reachable"),
    ("upload refused", ConnectionError, "403 Forbidden"),
])
def test_each_push_failure_names_the_ready_folder_and_the_command(case, error_type, reason, tmp_path, monkeypatch):
    api = type("Api", (_FakeApi,), {})
    monkeypatch.setattr(push, "HfApi", api)
    monkeypatch.setattr(push.constants, "HF_HUB_OFFLINE", case == "offline")
    if case == "logged out":
        api.whoami_error = OSError("401 Client Error: Unauthorized for url")
    elif case == "no network":
        api.whoami_error = OSError("Max retries exceeded: Failed to resolve 'huggingface.co'")
    elif case == "upload refused":
        api.upload_error = OSError("403 Forbidden: you cannot write to this repo")
    with pytest.raises(error_type) as info:
        push.push_to_hub(str(tmp_path), "me/ranker", private=True)
    message = str(info.value)
    assert reason in message
    assert f"The folder {tmp_path} is ready; push it later with: hf upload me/ranker {tmp_path} . --private" in message
    assert "huggingface-cli" not in message


def test_a_successful_push_returns_the_commit_url(tmp_path, monkeypatch):
    monkeypatch.setattr(push, "HfApi", type("Api", (_FakeApi,), {}))
    monkeypatch.setattr(push.constants, "HF_HUB_OFFLINE", False)
    assert push.push_to_hub(str(tmp_path), "me/ranker") == "https://hub/commit/1"


def test_the_commands_in_the_messages_exist_in_the_installed_hf_cli():
    import os
    import subprocess
    import sys

    hf = os.path.join(os.path.dirname(sys.executable), "hf")
    upload = subprocess.run([hf, "upload", "--help"], capture_output=True, text=True)
    assert upload.returncode == 0 and "REPO_ID [LOCAL_PATH] [PATH_IN_REPO]" in upload.stdout
    assert "--private" in upload.stdout
    assert subprocess.run([hf, "auth", "login", "--help"], capture_output=True).returncode == 0
