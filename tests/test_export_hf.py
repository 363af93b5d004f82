"""`thumbtune export --format hf --out DIR`: a datasets folder with a card, and no person keys."""

from __future__ import annotations

from pathlib import Path

from bot.app import person_keys_from
from tests.helpers import thumbtune


def test_hf_export_has_every_split_a_card_and_no_person_keys(settings_env: dict[str, str], settings, tmp_path: Path):
    from datasets import load_from_disk

    env = {
        **settings_env,
        "USER": "alice",
        "LOGNAME": "alice",
        "LNAME": "alice",
        "USERNAME": "alice",
    }  # the shell's user
    said = "hello\n+\nwhat should I eat\n-\nbetter: Soup.\ncompare: tell me a joke\n2\ncompare: good night\n=\n"
    chat = thumbtune(["run"], env, stdin=said)
    assert chat.returncode == 0, chat.stderr
    out = tmp_path / "export"
    done = thumbtune(["export", "--format", "hf", "--out", str(out)], env)
    assert done.returncode == 0, done.stderr
    folder = load_from_disk(str(out))
    assert set(folder) == {"kto", "dpo", "sft", "comparisons"}
    assert folder["kto"].column_names == ["prompt", "completion", "label"]
    assert folder["dpo"].column_names == ["prompt", "chosen", "rejected"]
    comparisons = folder["comparisons"]
    assert sorted(comparisons["verdict"]) == ["second", "tie"]
    assert set(comparisons["first_version"]) == {0}
    # 👍 + 👎 on single answers, and 2️⃣ makes one desirable and one undesirable answer.
    assert sum(folder["kto"]["label"]) >= 2 and len(folder["kto"]) >= 4
    sources = {row["chosen"] for row in folder["dpo"]}
    assert " Soup." in sources and len(folder["dpo"]) >= 1
    card = (out / "README.md").read_text(encoding="utf-8")
    for field in (
        "`completion`",
        "`label`",
        "`chosen`",
        "`rejected`",
        "`verdict`",
        "`first_version`",
        "No person keys",
    ):
        assert field in card
    # Neither the raw user name nor its stored person key appears anywhere in the folder.
    person_key = person_keys_from(settings).key("shell", "alice")
    db = Path(settings_env["THUMBTUNE_DATA_DIR"]) / "thumbtune.db"
    assert person_key.encode() in db.read_bytes()  # it is stored, so its absence below means something
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert person_key.encode() not in data and b"alice" not in data, path


def test_hf_export_needs_a_folder(settings_env: dict[str, str]):
    done = thumbtune(["export", "--format", "hf"], settings_env, timeout=120)
    assert done.returncode == 2 and "--out DIR" in done.stderr


def test_hf_export_keeps_empty_splits_with_their_columns(settings_env: dict[str, str], tmp_path: Path):
    from datasets import load_from_disk

    # One liked answer: no pair, no comparison (as after the only verdicts were forgotten).
    chat = thumbtune(["run"], settings_env, stdin="hello\n+\n")
    assert chat.returncode == 0, chat.stderr
    out = tmp_path / "export"
    done = thumbtune(["export", "--format", "hf", "--out", str(out)], settings_env)
    assert done.returncode == 0, done.stderr
    folder = load_from_disk(str(out))
    assert {name: folder[name].num_rows for name in folder} == {"kto": 1, "dpo": 0, "sft": 1, "comparisons": 0}
    assert folder["dpo"].column_names == ["prompt", "chosen", "rejected"]
    assert folder["comparisons"].features["first_version"].dtype == "int64"
    assert "| `dpo` | 0 |" in (out / "README.md").read_text()
