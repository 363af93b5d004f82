"""The `thumbtune` command as a user runs it: subprocesses, piped input, the database checked after."""

from __future__ import annotations

import io
import json
import logging
import os
import resource
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


def _thumbtune(
    args: list[str],
    env: dict[str, str],
    *,
    stdin: str = "",
    timeout: float = 180,
    max_file_bytes: int | None = None,
) -> subprocess.CompletedProcess:
    """``python -m bot ARGS``; ``max_file_bytes`` caps the size of every file it writes
    (RLIMIT_FSIZE: a write past it fails as on a full disk, for root too)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("THUMBTUNE_", "SLACK_", "DISCORD_"))}
    full_env.update(env)

    def limit_files() -> None:
        if max_file_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        preexec_fn=limit_files if max_file_bytes is not None else None,
    )


def test_shell_chat_end_to_end_with_piped_input(settings_env: dict[str, str]):
    result = _thumbtune(["run"], settings_env, stdin="hello there\n+\nwhat should I eat\n👎\nbetter: Soup.\n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    answers = [line for line in lines if line.startswith("bot [v0]: ")]
    assert len(answers) == 2
    assert "(recorded 👍)" in lines and "(recorded 👎)" in lines

    db = Path(settings_env["THUMBTUNE_DATA_DIR"]) / "thumbtune.db"
    with sqlite3.connect(db) as connection:
        prompts = connection.execute("SELECT platform, text FROM prompts ORDER BY id").fetchall()
        responses = connection.execute("SELECT text, model_version, message_key FROM responses ORDER BY id").fetchall()
        votes = connection.execute("SELECT response_id, emoji, reward FROM votes ORDER BY id").fetchall()
        corrections = connection.execute("SELECT response_id, text FROM corrections").fetchall()
    assert prompts == [("shell", "hello there"), ("shell", "what should I eat")]
    assert [(version, key) for _, version, key in responses] == [(0, "shell:1"), (0, "shell:2")]
    assert answers[0].removeprefix("bot [v0]: ") in (responses[0][0], "…")
    assert votes == [(1, "👍", 1.0), (2, "👎", -1.0)]
    assert corrections == [(2, "Soup.")]


def test_rating_before_any_answer_and_unknown_commands_are_explained(settings_env: dict[str, str]):
    result = _thumbtune(["run"], settings_env, stdin="+\n/dance\n/help\n")
    assert result.returncode == 0, result.stderr
    assert "There is no answer to rate yet." in result.stdout
    assert "Unknown command /dance" in result.stdout
    assert "better: TEXT" in result.stdout


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("THUMBTUNE_MAX_NEW_TOKENS", "lots", "THUMBTUNE_MAX_NEW_TOKENS"),
        ("THUMBTUNE_ADAPTER", "irc", "THUMBTUNE_ADAPTER"),
        ("THUMBTUNE_MODEL", "./no/such/folder", "THUMBTUNE_MODEL: folder ./no/such/folder does not exist"),
        ("THUMBTUNE_TOP_P", "1.5", "THUMBTUNE_TOP_P"),
        ("THUMBTUNE_EMOJI_REWARDS", "thumbs", "THUMBTUNE_EMOJI_REWARDS"),
        ("THUMBTUNE_EMOJI_REWARDS", "+1=1,thumbsup=0.5", "THUMBTUNE_EMOJI_REWARDS: +1 and thumbsup are one emoji"),
        ("THUMBTUNE_FLAG_EMOJI", "thumbsup", "THUMBTUNE_FLAG_EMOJI: thumbsup is also a rating emoji"),
        ("THUMBTUNE_ADMINS", "bob", "THUMBTUNE_ADMINS: expected PLATFORM:USER_ID"),
        ("THUMBTUNE_FLAG_EMOJI", "👍", "THUMBTUNE_FLAG_EMOJI: 👍 is also a rating emoji"),
        ("THUMBTUNE_EMOJI_REWARDS", "👍=nan,👎=-1", "THUMBTUNE_EMOJI_REWARDS: the reward of '👍' must be a number"),
        ("THUMBTUNE_EMOJI_REWARDS", '{"👍": 1e400}', "THUMBTUNE_EMOJI_REWARDS: the reward of '👍' must be a number"),
        (
            "THUMBTUNE_MAX_PROMPT_CHARS",
            "1000000000000",
            "THUMBTUNE_MAX_PROMPT_CHARS: Input should be less than or equal",
        ),
        ("THUMBTUNE_DASHBOARD_TOKEN", "", "THUMBTUNE_DASHBOARD_TOKEN: is empty"),
        (
            "THUMBTUNE_DASHBOARD_ALLOWED_HOSTS",
            "https://dash.example.com/",
            "THUMBTUNE_DASHBOARD_ALLOWED_HOSTS: expected",
        ),
    ],
)
def test_a_bad_setting_stops_start_up_with_one_line(settings_env: dict[str, str], name, value, expected):
    result = _thumbtune(["run"], {**settings_env, name: value}, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0] and "Traceback" not in result.stderr


def test_a_broken_model_folder_is_reported_without_a_traceback(settings_env: dict[str, str], tmp_path: Path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    result = _thumbtune(["run"], {**settings_env, "THUMBTUNE_MODEL": str(broken)}, stdin="hi\n", timeout=60)
    assert result.returncode == 1
    assert f"THUMBTUNE_MODEL folder {broken} is not a loadable model" in result.stderr
    assert "Traceback" not in result.stderr


def test_tokens_never_reach_the_log(settings_env: dict[str, str]):
    secret = "xoxb-very-secret-token-123"
    env = {**settings_env, "THUMBTUNE_LOG_LEVEL": "DEBUG", "THUMBTUNE_ADAPTER": "shell", "SLACK_BOT_TOKEN": secret}
    result = _thumbtune(["run"], env, stdin="hello\n")
    assert result.returncode == 0, result.stderr
    log = (Path(settings_env["THUMBTUNE_DATA_DIR"]) / "thumbtune.log").read_text()
    assert "DEBUG" in log  # the shell chat's log went to its file, at the level asked for
    assert secret not in result.stderr and secret not in result.stdout and secret not in log


def test_json_logs_are_one_object_per_line_with_the_secrets_masked(settings_env: dict[str, str]):
    secret = "xoxb-very-secret-token-456"
    env = {
        **settings_env,
        "THUMBTUNE_LOG_FORMAT": "json",
        "THUMBTUNE_LOG_LEVEL": "DEBUG",
        "THUMBTUNE_ADAPTER": "shell",
        "SLACK_BOT_TOKEN": secret,
    }
    result = _thumbtune(["run"], env, stdin="hello\n")
    assert result.returncode == 0, result.stderr
    lines = (Path(settings_env["THUMBTUNE_DATA_DIR"]) / "thumbtune.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert records and all({"time", "level", "logger", "message"} <= record.keys() for record in records)
    assert {record["level"] for record in records} >= {"DEBUG", "INFO"}
    assert any(record["logger"] == "bot.loop" for record in records)
    assert secret not in "\n".join(lines)


def test_a_secret_a_library_puts_in_a_message_is_masked():
    from bot.logs import MASK, JsonLines, MaskSecrets

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLines())
    handler.addFilter(MaskSecrets(["xapp-1-A0-secret-value"]))
    logger = logging.getLogger("thumbtune.test.secrets")
    logger.addHandler(handler)
    try:
        logger.warning("connecting with %s failed", "xapp-1-A0-secret-value", extra={"run": 7, "platform": "slack"})
        try:
            raise RuntimeError("bad token xapp-1-A0-secret-value")
        except RuntimeError:
            logger.exception("it failed")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == f"connecting with {MASK} failed" and (first["run"], first["platform"]) == (7, "slack")
    assert MASK in second["exception"] and "xapp-1-A0-secret-value" not in stream.getvalue()


def test_the_shell_chat_keeps_log_lines_out_of_the_conversation(settings_env: dict[str, str]):
    env = {**settings_env, "THUMBTUNE_ADAPTER": "shell", "THUMBTUNE_REGISTRY_POLL_S": "0.2"}
    result = _thumbtune(["run"], env, stdin="hello\n")
    assert result.returncode == 0, result.stderr
    log_path = Path(settings_env["THUMBTUNE_DATA_DIR"]) / "thumbtune.log"
    assert result.stderr == ""  # nothing printed into the terminal but the chat
    assert f"(the log goes to {log_path})" in result.stdout and "bot [v0]:" in result.stdout
    assert " INFO " not in result.stdout
    log = log_path.read_text()
    assert "INFO" in log and "next scheduled training run" in log
    assert "Running job" not in log and "apscheduler" not in log  # routine scheduler lines are not INFO


def test_make_tiny_model_is_deterministic(tmp_path: Path):
    runs = []
    for name in ("a", "b"):
        result = _thumbtune(["make-tiny-model", str(tmp_path / name), "--steps", "20"], {})
        assert result.returncode == 0, result.stderr
        runs.append((tmp_path / name / "model.safetensors").read_bytes())
    assert runs[0] == runs[1]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "a")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "a")
    assert model.config.vocab_size == len(tokenizer)


def test_forget_me_in_chat_and_forget_on_the_command_line(settings_env: dict[str, str]):
    result = _thumbtune(["run"], settings_env, stdin="hello\n+\nforget me\n")
    assert result.returncode == 0, result.stderr
    assert "Done: I deleted 1 prompt(s) with their answers, 1 vote(s)" in result.stdout
    db = Path(settings_env["THUMBTUNE_DATA_DIR"]) / "thumbtune.db"
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT count(*) FROM prompts").fetchone()[0] == 0

    result = _thumbtune(["run"], settings_env, stdin="hello again\n")
    assert result.returncode == 0
    user = __import__("getpass").getuser()
    result = _thumbtune(["forget", f"shell:{user}"], settings_env)
    assert result.returncode == 0, result.stderr
    assert "Deleted 1 prompt(s)" in result.stdout
    assert _thumbtune(["forget", "nobody"], settings_env).returncode == 2


def test_after_forget_me_exports_hold_nothing_of_that_person(settings_env: dict[str, str], tmp_path: Path):
    out = tmp_path / "kto.jsonl"

    def exported() -> str:
        result = _thumbtune(["export", "--format", "kto", "--out", str(out)], settings_env)
        assert result.returncode == 0, result.stderr
        return out.read_text()

    assert _thumbtune(["run"], settings_env, stdin="my secret question\n+\n").returncode == 0
    assert "my secret question" in exported()
    assert _thumbtune(["run"], settings_env, stdin="forget me\n").returncode == 0
    assert "my secret question" not in exported()


# --- the data folder and the database cannot be used ------------------------------------
# Every case is a real condition that stops root as well (CI runs as root, which
# chmod does not stop): paths under /proc and /sys, a regular file where a folder is
# needed, a database file that SQLite itself opens read-only, a file size limit.
def _read_only_database(path: Path) -> Path:
    """A database SQLite opens read-only for everyone: its header's write version (byte 18)
    is one this SQLite does not know, as in a file from a newer SQLite."""
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE kept (id INTEGER)")
    raw.close()
    header = bytearray(path.read_bytes())
    header[18] = 3
    path.write_bytes(bytes(header))
    return path


def _regular_file(tmp_path: Path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return path


UNUSABLE_DATA: dict[str, tuple[Callable[[Path], dict[str, str]], str]] = {
    "data folder under a regular file": (
        lambda tmp: {"THUMBTUNE_DATA_DIR": str(_regular_file(tmp) / "data")},
        "THUMBTUNE_DATA_DIR: cannot create the folder",
    ),
    "data folder that cannot be created (under /proc)": (
        lambda tmp: {"THUMBTUNE_DATA_DIR": f"/proc/thumbtune-{os.getpid()}/data"},
        "THUMBTUNE_DATA_DIR: cannot create the folder",
    ),
    "data folder nobody can write in (/sys)": (
        lambda tmp: {"THUMBTUNE_DATA_DIR": "/sys"},
        "THUMBTUNE_DATA_DIR: cannot write the person secret in /sys",
    ),
    "read-only database": (
        lambda tmp: {"THUMBTUNE_DB": str(_read_only_database(tmp / "old.db"))},
        "THUMBTUNE_DB: cannot use the database",
    ),
    "database in a folder that cannot be created": (
        lambda tmp: {"THUMBTUNE_DB": f"/proc/thumbtune-{os.getpid()}/thumbtune.db"},
        "THUMBTUNE_DB: cannot use the database",
    ),
    "database under a regular file": (
        lambda tmp: {"THUMBTUNE_DB": str(_regular_file(tmp) / "db" / "thumbtune.db")},
        "THUMBTUNE_DB: cannot use the database",
    ),
    "database in a folder nobody can write in (/sys)": (
        lambda tmp: {"THUMBTUNE_DB": "/sys/thumbtune.db"},
        "THUMBTUNE_DB: cannot use the database /sys/thumbtune.db: unable to open database file",
    ),
    "database that is a folder": (
        lambda tmp: {"THUMBTUNE_DB": str(tmp)},
        "(it is a folder)",
    ),
    "database that is not a database": (
        lambda tmp: {"THUMBTUNE_DB": str(_regular_file(tmp))},
        "THUMBTUNE_DB: cannot use the database",
    ),
}


def _one_line(result: subprocess.CompletedProcess, expected: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0
    assert len(lines) == 1 and lines[0].startswith("thumbtune: "), result.stderr
    assert expected in lines[0] and "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("case", list(UNUSABLE_DATA))
def test_a_data_folder_or_database_that_cannot_be_used_stops_run_with_one_line(
    settings_env: dict[str, str], tmp_path: Path, case: str
):
    make_env, expected = UNUSABLE_DATA[case]
    if "/sys" in case and not Path("/sys").is_dir():
        pytest.skip("no /sys here")
    result = _thumbtune(["run"], {**settings_env, **make_env(tmp_path)}, stdin="hello\n", timeout=60)
    assert result.returncode == 1
    _one_line(result, expected)
    assert "bot [v0]" not in result.stdout  # stopped before serving


def test_a_data_folder_that_is_a_regular_file_is_a_bad_setting(settings_env: dict[str, str], tmp_path: Path):
    result = _thumbtune(["run"], {**settings_env, "THUMBTUNE_DATA_DIR": str(_regular_file(tmp_path))}, timeout=60)
    assert result.returncode == 2
    _one_line(result, "THUMBTUNE_DATA_DIR: ")


@pytest.mark.parametrize("command", [["stats"], ["forget", "slack:U012AB3CD"], ["export", "--format", "kto"]])
def test_commands_that_open_the_database_say_so_in_one_line(
    settings_env: dict[str, str], tmp_path: Path, command: list[str]
):
    env = {**settings_env, "THUMBTUNE_DB": str(_read_only_database(tmp_path / "old.db"))}
    result = _thumbtune(command, env, timeout=60)
    assert result.returncode == 1
    _one_line(result, "THUMBTUNE_DB: cannot use the database")
    assert result.stdout == ""

    env = {**settings_env, "THUMBTUNE_DATA_DIR": "/sys"}  # the database in a folder nobody can write in
    _one_line(_thumbtune(command, env, timeout=60), "THUMBTUNE_DATA_DIR: ")


def test_a_full_disk_at_start_up_is_one_line_and_leaves_no_empty_secret(settings_env: dict[str, str]):
    data = Path(settings_env["THUMBTUNE_DATA_DIR"])
    # A fresh data folder: the person secret (64 bytes) is the first file written. (Room for
    # a few bytes: tempfile, imported by the ML libraries, probes the temporary folder with 4.)
    result = _thumbtune(["run"], settings_env, stdin="hello\n", timeout=60, max_file_bytes=16)
    _one_line(result, "THUMBTUNE_DATA_DIR: cannot write the person secret")
    assert not (data / "person.key").exists()  # an empty one would stop every later start

    # A data folder in use: the database is the first to need more room.
    assert _thumbtune(["run"], settings_env, stdin="hello\n").returncode == 0
    result = _thumbtune(["run"], settings_env, stdin="hello\n", timeout=60, max_file_bytes=1024)
    _one_line(result, "THUMBTUNE_DATA_DIR: cannot use the database")
    # Room again: it starts on the same file, nothing lost.
    result = _thumbtune(["run"], settings_env, stdin="hello again\n")
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(data / "thumbtune.db") as connection:
        assert connection.execute("SELECT text FROM prompts ORDER BY id").fetchall() == [("hello",), ("hello again",)]


def test_what_the_bot_writes_is_private_to_its_account(settings_env: dict[str, str], tmp_path: Path):
    data = Path(settings_env["THUMBTUNE_DATA_DIR"])
    result = _thumbtune(["run"], settings_env, stdin="hello there\n+\n")
    assert result.returncode == 0, result.stderr
    exported = tmp_path / "exports"
    for fmt, out in (("kto", exported / "kto.jsonl"), ("hf", exported / "hf")):
        result = _thumbtune(["export", "--format", fmt, "--out", str(out)], settings_env)
        assert result.returncode == 0, result.stderr
    written = [data, *data.rglob("*"), *exported.rglob("*")]
    names = {path.name for path in written}
    expected = {"thumbtune.db", "thumbtune.log", "person.key", "kto.jsonl", "artifacts", "dataset_dict.json"}
    assert expected <= names, names
    loose = {
        str(path.relative_to(tmp_path)): oct(path.stat().st_mode & 0o777)
        for path in written
        if path.stat().st_mode & 0o077
    }
    assert loose == {}
