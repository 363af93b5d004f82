"""The systemd unit in deploy/: checked by systemd's own parser where systemd-analyze exists."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "deploy" / "thumbtune.service"
SHIPPED_EXEC = "/opt/thumbtune/.venv/bin/thumbtune"


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_the_systemd_unit_parses_without_a_warning(tmp_path: Path) -> None:
    text = UNIT.read_text()
    assert f"ExecStart={SHIPPED_EXEC} run" in text
    # verify checks that the program exists: point it at this checkout's thumbtune, change nothing else.
    here = tmp_path / "thumbtune.service"
    here.write_text(text.replace(SHIPPED_EXEC, str(Path(sys.executable).with_name("thumbtune"))))
    checked = _verify(here)
    assert checked.returncode == 0 and checked.stderr.strip() == "", checked.stderr
    # And the check is real: a wrong value is reported.
    broken = tmp_path / "broken.service"
    broken.write_text(here.read_text().replace("TimeoutStopSec=45", "TimeoutStopSec=forty"))
    assert "forty" in _verify(broken).stderr


def test_the_unit_restarts_on_failure_reads_secrets_from_a_file_and_stops_gracefully() -> None:
    settings = dict(
        line.split("=", 1) for line in UNIT.read_text().splitlines() if "=" in line and not line.startswith("#")
    )
    assert settings["Restart"] == "on-failure" and settings["RestartPreventExitStatus"] == "2"
    assert settings["EnvironmentFile"] == "/etc/thumbtune/thumbtune.env"
    assert settings["User"] == "thumbtune" and settings["StateDirectoryMode"] == "0700"
    assert settings["KillSignal"] == "SIGTERM" and int(settings["TimeoutStopSec"]) > 20  # > the default grace
    assert settings["StandardError"] == "journal"
