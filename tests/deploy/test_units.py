"""The systemd units: valid, and hardened (systemd's own verdict, offline)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bots.settings import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
SERVICES = sorted(p.name for p in DEPLOY.glob("*.service"))
ANALYZE = shutil.which("systemd-analyze") or "systemd-analyze"  # test.sh installs it


@pytest.fixture(scope="module")
def units(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The units with /opt/parley pointing at a stand-in install (verify checks ExecStart)."""
    root = tmp_path_factory.mktemp("units")
    prefix = root / "opt-parley"
    (prefix / ".venv" / "bin").mkdir(parents=True)
    exe = prefix / ".venv" / "bin" / "parley"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    for unit in [*DEPLOY.glob("*.service"), *DEPLOY.glob("*.target")]:
        (root / unit.name).write_text(unit.read_text().replace("/opt/parley", str(prefix)))
    return root


def test_every_service_is_there() -> None:
    assert SERVICES == [
        "parley-slack.service",
        "parley-telegram.service",
        "parley-web.service",
        "parley-worker@.service",
    ]
    assert (DEPLOY / "parley.target").is_file()


@pytest.mark.parametrize("unit", [*SERVICES, "parley.target"])
def test_systemd_analyze_verify_is_silent(units: Path, unit: str) -> None:
    # verify exits 0 on some problems, so any output at all is a failure
    result = subprocess.run(
        [ANALYZE, "verify", str(units / unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr
    )


@pytest.mark.parametrize("unit", SERVICES)
def test_exposure_score_is_at_most_2_5(units: Path, unit: str) -> None:
    result = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", str(units / unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    score = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert score, result.stdout + result.stderr
    assert float(score.group(1)) <= 2.5, result.stdout


@pytest.mark.parametrize("unit", SERVICES)
def test_services_notify_restart_and_load_settings_and_secrets(unit: str) -> None:
    text = (DEPLOY / unit).read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "RestartPreventExitStatus=78",
        "EnvironmentFile=/etc/parley/parley.env",
        "LoadCredential=parley:/etc/parley/credentials/common\n",
        "PartOf=parley.target",
        "After=parley.target",  # so that stopping the target waits for the unit
        "MemoryMax=",
    ):
        assert line in text, f"{unit}: {line}"


def settings_of(unit: str) -> dict[str, dict[str, str]]:
    """The unit's settings by section (the last value of a key repeated)."""
    sections: dict[str, dict[str, str]] = {}
    section: dict[str, str] = {}
    for line in (DEPLOY / unit).read_text().splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = sections.setdefault(line[1:-1], {})
        elif "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            section[key] = value
    return sections


def seconds(value: str) -> float:
    """A systemd time span as seconds ("5", "10s", "5min", "2min 30s")."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    spans = re.findall(r"([\d.]+)\s*([a-z]*)", value)
    assert spans, value
    return sum(float(number) * units[unit] for number, unit in spans)


@pytest.mark.parametrize("unit", SERVICES)
def test_a_process_that_keeps_failing_trips_the_start_limit(unit: str) -> None:
    sections = settings_of(unit)
    unit_part, service = sections["Unit"], sections["Service"]
    interval = seconds(unit_part["StartLimitIntervalSec"])
    burst = int(unit_part["StartLimitBurst"])
    delay = seconds(service["RestartSec"])
    # A process that fails at once is started `burst` times within `interval`: systemd then
    # stops restarting it, instead of restarting it every few seconds for ever.
    assert burst * delay < interval
    assert delay >= 5  # a pause between tries, not a tight loop


OWN_SECRETS = {
    "parley-worker@.service": set(),
    "parley-web.service": {"web"},
    "parley-telegram.service": {"telegram"},
    "parley-slack.service": {"slack"},
}


def loaded_credentials(unit: str) -> set[str]:
    return set(re.findall(r"^LoadCredential=(\S+)$", (DEPLOY / unit).read_text(), re.M))


@pytest.mark.parametrize("unit", SERVICES)
def test_each_unit_gets_only_its_own_secrets(unit: str) -> None:
    expected = {"parley:/etc/parley/credentials/common"} | {
        f"parley_{own}:/etc/parley/credentials/{own}" for own in OWN_SECRETS[unit]
    }
    assert loaded_credentials(unit) == expected


def test_each_unit_has_a_state_directory_of_its_own() -> None:
    # Dynamic users of different units sharing one StateDirectory take it from each other.
    homes = [settings_of(unit)["Service"]["StateDirectory"] for unit in SERVICES]
    assert len(set(homes)) == len(homes)
    for unit, home in zip(SERVICES, homes, strict=True):
        assert f"HOME=/var/lib/{home}" in settings_of(unit)["Service"]["Environment"], unit


def test_the_worker_port_is_the_instance_name_whatever_the_environment_file_says() -> None:
    # EnvironmentFile= overrides Environment=, so the port goes on the command line.
    service = settings_of("parley-worker@.service")["Service"]
    assert service["ExecStart"].endswith("parley worker --port %i")
    assert "PARLEY_WORKER_PORT" not in (DEPLOY / "parley-worker@.service").read_text()
