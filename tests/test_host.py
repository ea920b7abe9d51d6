"""The SSH files the docker provider uses: private, pinned, never the key in options."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from components.host import ssh_files_dir, ssh_options, write_ssh_files

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----"
KNOWN = "203.0.113.10 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample"


def test_key_and_known_hosts_are_written_privately(tmp_path: Path) -> None:
    directory = tmp_path / "ssh"
    options = write_ssh_files(directory, KEY, KNOWN)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "id").stat().st_mode) == 0o600
    assert (directory / "id").read_text() == KEY + "\n"
    assert (directory / "known_hosts").read_text() == KNOWN + "\n"
    assert options == ssh_options(directory)
    assert "StrictHostKeyChecking=yes" in options and f"UserKnownHostsFile={directory / 'known_hosts'}" in options
    assert KEY not in " ".join(options)


def test_a_planted_symlink_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    planted = tmp_path / "ssh"
    planted.symlink_to(elsewhere)
    with pytest.raises(PermissionError, match="refusing to write the SSH key"):
        write_ssh_files(planted, KEY, KNOWN)
    assert not (elsewhere / "id").exists()


def test_the_directory_is_stable_and_per_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert ssh_files_dir("cutover", "prod") == tmp_path / f"cutover-{os.getuid()}-prod-ssh"
    assert ssh_files_dir("cutover", "prod") == ssh_files_dir("cutover", "prod")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert str(os.getuid()) in ssh_files_dir("cutover", "prod").name
