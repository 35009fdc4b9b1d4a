"""deploy/install.sh into a scratch root: layout, units pointing at it, settings kept on upgrade.

The virtualenv step (pip install of TensorFlow, minutes) is skipped here.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from bots.settings import REPO_ROOT


def install(root: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PARLEY_PREFIX": str(root / "opt"),
        "PARLEY_ETC": str(root / "etc"),
        "PARLEY_UNIT_DIR": str(root / "units"),
        "PARLEY_SKIP_PIP": "1",
    }
    return subprocess.run(
        ["bash", str(REPO_ROOT / "deploy" / "install.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_install_then_upgrade_in_place(tmp_path: Path) -> None:
    first = install(tmp_path)
    assert first.returncode == 0, first.stderr
    opt, etc, units = tmp_path / "opt", tmp_path / "etc", tmp_path / "units"
    assert (opt / "bots" / "cli.py").is_file() and (opt / "models" / "default").is_dir()
    assert not (opt / ".git").exists() and not (opt / ".venv").exists()
    env_file = etc / "parley.env"
    assert env_file.read_text() == (REPO_ROOT / ".env.example").read_text()
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((etc / "credentials").stat().st_mode) == 0o700
    worker = (units / "parley-worker@.service").read_text()
    assert f"ExecStart={opt}/.venv/bin/parley worker" in worker
    assert f"EnvironmentFile={etc}/parley.env" in worker and "/opt/parley" not in worker
    assert "parley config check" in first.stdout

    secrets = etc / "credentials"
    assert {p.name for p in secrets.iterdir()} == {"common", "web", "telegram", "slack"}

    env_file.write_text("PARLEY_REDIS_URL=redis://127.0.0.1:6379/0\n")
    (opt / "core" / "gone.py").write_text("# a module the new version no longer has\n")
    # secrets as an installation from before the split kept them
    (secrets / "telegram_token").write_text("123:abc")
    (secrets / "slack_signing_secret").write_text("s3cret")
    (secrets / "redis_url").write_text("redis://:pw@db:6379/0")
    second = install(tmp_path)
    assert second.returncode == 0, second.stderr
    assert env_file.read_text() == "PARLEY_REDIS_URL=redis://127.0.0.1:6379/0\n"
    assert not (opt / "core" / "gone.py").exists()
    assert (secrets / "telegram" / "token").read_text() == "123:abc"
    assert (secrets / "slack" / "signing_secret").read_text() == "s3cret"
    assert (secrets / "common" / "redis_url").read_text() == "redis://:pw@db:6379/0"
    assert not [p for p in secrets.iterdir() if p.is_file()]


def test_config_check_reads_the_installed_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "parley.env"
    env_file.write_text("PARLEY_REDIS_URL=redis://:pw-123456@db:6379/0\nPARLEY_WORKER_BATCH=8\n")
    cmd = [sys.executable, "-m", "bots.cli", "config", "check", "--env-file"]
    ok = subprocess.run([*cmd, str(env_file), "--for", "worker"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "PARLEY_WORKER_BATCH=8" in ok.stdout and "pw-123456" not in ok.stdout
    missing = subprocess.run(
        [*cmd, str(env_file), "--for", "telegram"], capture_output=True, text=True
    )
    assert missing.returncode == 78 and "PARLEY_TELEGRAM_TOKEN is not set" in missing.stderr
    env_file.write_text("PARLEY_WORKER_BATCH=many\n")
    bad = subprocess.run([*cmd, str(env_file)], capture_output=True, text=True)
    assert bad.returncode == 78 and "PARLEY_WORKER_BATCH" in bad.stderr
