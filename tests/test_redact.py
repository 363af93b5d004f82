"""The scrubber (storage.redact): worked examples per kind, near misses, the setting, and the
boundaries where texts leave the database (a run snapshot, every export format), through the
real bot service and a real SQLite file. The raw text stays in the database."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bot.events import IncomingCorrection, IncomingPrompt, IncomingReaction, message_key
from bot.settings import SettingsError, load_settings
from bot.snapshots import collect
from storage.redact import KINDS, ApiKeyRecognizer, Finding, Redactor, parse_kinds, placeholder, replace
from tests.helpers import thumbtune
from trainer import snapshot
from trainer.config import DataConfig
from trainer.export import export, export_records

ALL = Redactor.from_kinds(KINDS)

# (text, what it becomes): one or more true positives per kind, as people paste them.
FOUND = [
    # api_key: detect-secrets' detectors, key prefixes, keywords, entropy
    ("my key is sk-live-4eC39HqLyjWDarjtT1zdp7dc ok", "my key is <API_KEY> ok"),
    ("token xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "token <API_KEY>"),
    ("aws AKIAIOSFODNN7EXAMPLE", "aws <API_KEY>"),
    ("gh ghp_1234567890abcdefghijABCDEFGHIJ123456 done", "gh <API_KEY> done"),
    (
        "jwt eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U end",
        "jwt <API_KEY> end",
    ),
    ("db at https://bob:Sup3rSecret@db.example.com/x", "db at https://bob:<API_KEY>@db.example.com/x"),
    ("my password is hunter22", "my password is <API_KEY>"),
    ("api_key=Zm9vYmFyYmF6cXV4MTIzNDU2", "api_key=<API_KEY>"),
    ("-----BEGIN RSA PRIVATE KEY-----", "-----<API_KEY>"),
    ("use q8Xz3Lm2Vb7Nc4Kd9Rt6Wy1Hs5Jf0Pa for it", "use <API_KEY> for it"),
    # email
    ("mail jane.doe+tea@example.org, thanks", "mail <EMAIL>, thanks"),
    # phone: international anywhere, national in the listed regions
    ("call +44 20 7946 0958 today", "call <PHONE> today"),
    ("or (415) 555-2671 in the US", "or <PHONE> in the US"),
    ("or 020 7946 0958 in London", "or <PHONE> in London"),
    # card: issuer range and Luhn
    ("card 4111 1111 1111 1111 exp 12/29", "card <CARD> exp 12/29"),
    ("amex 3782-822463-10005", "amex <CARD>"),
    # iban, grouped or not
    ("IBAN DE89 3704 0044 0532 0130 00 please", "IBAN <IBAN> please"),
    ("GB82WEST12345698765432", "<IBAN>"),
    # national ids with their check digits
    ("SSN 536-22-8726.", "SSN <NATIONAL_ID>."),
    ("DNI 12345678Z", "DNI <NATIONAL_ID>"),
    ("CF RSSMRA85T10A562S", "CF <NATIONAL_ID>"),
    ("CPF 390.533.447-05", "CPF <NATIONAL_ID>"),
    # ip_address: public v4 and v6
    ("server 8.8.8.8 is down", "server <IP_ADDRESS> is down"),
    ("v6 2001:4860:4860::8888 works", "v6 <IP_ADDRESS> works"),
]

# Near misses that must stay as they are.
KEPT = [
    "card 4111 1111 1111 1112 fails the Luhn check",  # 16 digits, wrong check digit
    "order 1234567890123456 shipped",  # 16 digits that are no card (Luhn fails)
    "the IBAN DE88 3704 0044 0532 0130 00 has a wrong check",
    "SSN 000-12-3456 is not a valid number",
    "we shipped v1.2.3.4 and version 2.0.0.1 today",  # versions, not addresses
    "the router is 192.168.1.1 and localhost is 127.0.0.1",  # private and loopback: nobody's
    "it costs 12.99, 1843 seconds, page 312, 2024-03-05 at 10:30",
    "a commit like deadbeef and a word like extraordinarily",
    "the password was changed yesterday",  # a keyword without a value
    "placeholders stay: <EMAIL> <API_KEY> <PHONE>",
    "I have 3 cats and 12 apples, call it 1500000 points",
]


@pytest.mark.parametrize(("text", "expected"), FOUND)
def test_each_kind_is_replaced_by_its_placeholder(text: str, expected: str) -> None:
    assert ALL.redact(text) == expected


@pytest.mark.parametrize("text", KEPT)
def test_near_misses_are_kept(text: str) -> None:
    assert ALL.findings(text) == [], [text[f.start : f.end] for f in ALL.findings(text)]
    assert ALL.redact(text) == text


def test_scrubbing_is_idempotent_and_keeps_the_rest_of_the_text() -> None:
    text = "\n".join(t for t, _ in FOUND)
    once = ALL.redact(text)
    assert ALL.redact(once) == once
    assert once == "\n".join(e for _, e in FOUND)


def test_detection_is_apart_from_the_operator() -> None:
    text = "write jane@example.org or +44 20 7946 0958"
    found = ALL.findings(text)
    assert found == [Finding("email", 6, 22), Finding("phone", 26, 42)]
    assert replace(text, found) == "write <EMAIL> or <PHONE>" == ALL.redact(text)
    assert placeholder("ip_address") == "<IP_ADDRESS>"


def test_overlaps_go_to_the_earlier_kind() -> None:
    # A key holding a long run of digits is one key, not a key around a phone number.
    text = "xoxb-441234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
    assert ALL.findings(text) == [Finding("api_key", 0, len(text))]


def test_only_the_chosen_kinds_are_scrubbed() -> None:
    text = "mail jane@example.org, card 4111 1111 1111 1111"
    assert Redactor.from_kinds(["email"]).redact(text) == "mail <EMAIL>, card 4111 1111 1111 1111"
    off = Redactor.from_kinds(())
    assert not off and off.redact(text) == text
    with pytest.raises(ValueError, match="unknown kinds"):
        Redactor.from_kinds(["names"])


def test_the_key_prefilter_changes_nothing_found() -> None:
    from bench.redact import texts_mix

    texts, _ = texts_mix(1500, dirty=0.3, seed=3)
    full, fast = Redactor([ApiKeyRecognizer(prefilter=False)]), Redactor([ApiKeyRecognizer()])
    assert [full.findings(t) for t in texts] == [fast.findings(t) for t in texts]
    assert sum(bool(fast.findings(t)) for t in texts) > 50  # the mix really holds keys


@pytest.mark.parametrize(
    ("value", "kinds"),
    [
        ("", KINDS),
        ("all", KINDS),
        ("off", ()),
        ("none", ()),
        ("email, card", ("email", "card")),
        ("CARD,email", ("email", "card")),
    ],
)
def test_the_setting_names_kinds(value: str, kinds: tuple[str, ...]) -> None:
    assert parse_kinds(value) == kinds


def test_a_bad_setting_stops_start_up_with_one_line(settings_env: dict[str, str], monkeypatch) -> None:
    assert load_settings().redact == KINDS  # on by default
    monkeypatch.setenv("THUMBTUNE_REDACT", "email,names")
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert str(error.value).startswith("THUMBTUNE_REDACT: unknown kind 'names'") and "\n" not in str(error.value)
    monkeypatch.setenv("THUMBTUNE_REDACT", "off")
    assert load_settings().redact == ()


# --- where texts leave the database -------------------------------------------------------
SECRETS = {
    "key": "sk-live-4eC39HqLyjWDarjtT1zdp7dc",
    "email": "jane.doe@example.org",
    "card": "4111 1111 1111 1111",
    "phone": "+44 20 7946 0958",
    "iban": "DE89 3704 0044 0532 0130 00",
}


async def _voted_with_secrets(runtime) -> None:
    """Prompts holding secrets, answered by the tiny model; one liked, one disliked and corrected."""
    service = runtime.service
    keys = []
    for n, text in enumerate(
        [
            f"my key is {SECRETS['key']} and my mail {SECRETS['email']}",
            f"charge card {SECRETS['card']} or IBAN {SECRETS['iban']}",
        ]
    ):
        reply = await service.on_prompt(IncomingPrompt(platform="slack", channel="C1", user=f"U{n}", text=text))
        assert reply is not None and reply.ok, reply
        key = message_key("slack", "C1", f"{n}.0")
        await service.answer_posted(reply.response_ids[0], key)
        keys.append(key)
    await service.on_reaction(IncomingReaction(platform="slack", message_key=keys[0], user="U7", emoji="+1"))
    await service.on_reaction(IncomingReaction(platform="slack", message_key=keys[1], user="U7", emoji="-1"))
    corrected = await service.on_correction(
        IncomingCorrection(platform="slack", message_key=keys[1], user="U8", text=f"call me on {SECRETS['phone']}")
    )
    assert corrected is not None
    # A comparison of two answers to a question holding an e-mail address, and a verdict on it.
    reply = await service.on_prompt(
        IncomingPrompt(platform="slack", channel="C1", user="U3", text=f"compare: write to {SECRETS['email']}?")
    )
    assert reply is not None and reply.ok and reply.compare, reply
    key = message_key("slack", "C1", "9.0")
    await service.answer_posted(reply.response_ids[0], key)
    await service.on_reaction(IncomingReaction(platform="slack", message_key=key, user="U7", emoji="one"))


def _holds_no_secret(text: str) -> None:
    for name, value in SECRETS.items():
        assert value not in text, name


async def test_snapshot_and_exports_hold_placeholders_and_the_database_the_raw_text(runtime, tmp_path: Path) -> None:
    await _voted_with_secrets(runtime)
    async with runtime.database.reading() as conn:
        stored = " ".join(
            row[0]
            for row in await (
                await conn.execute("SELECT text FROM prompts UNION ALL SELECT text FROM corrections")
            ).fetchall()
        )
    assert all(value in stored for value in SECRETS.values())  # the database keeps the raw text

    dataset = await collect(runtime.repository, DataConfig(held_out_fraction=0.5), parent=0)
    uri = str(tmp_path / "run")
    manifest = snapshot.Manifest(run=1, parent=0, vote_cutoff=0.0, base_model="tiny", data={"redact": list(KINDS)})
    snapshot.write(uri, manifest, dataset)
    written = (tmp_path / "run" / snapshot.DATASET).read_text(encoding="utf-8")
    _holds_no_secret(written)
    for shown in ("<API_KEY>", "<EMAIL>", "<CARD>", "<IBAN>", "<PHONE>"):
        assert shown in written, shown
    assert dataset.counts()["train_pairs"] + dataset.counts()["held_out_pairs"] >= 1  # the correction pair

    # The split and the labels are the same with scrubbing on and off: only the texts differ.
    raw = await collect(runtime.repository, DataConfig(held_out_fraction=0.5, redact=()), parent=0)
    assert raw.counts() == dataset.counts()
    assert [e.group for e in raw.train] == [e.group for e in dataset.train]
    assert SECRETS["key"] in repr(raw.train + raw.held_out)

    db = runtime.database.path
    for fmt in ("kto", "dpo", "sft"):
        out = tmp_path / f"{fmt}.jsonl"
        assert await asyncio.to_thread(export, db, fmt=fmt, out=out) > 0  # the default: every kind scrubbed
        _holds_no_secret(out.read_text(encoding="utf-8"))
    assert SECRETS["phone"] in json.dumps(await export_records(db, fmt="dpo", redact=()))


async def test_the_hf_export_is_scrubbed_comparisons_included(runtime, tmp_path: Path) -> None:
    from datasets import load_from_disk  # the train extra, installed for the tests

    await _voted_with_secrets(runtime)
    out = tmp_path / "hf"
    await asyncio.to_thread(export, runtime.database.path, fmt="hf", out=out)
    folder = load_from_disk(str(out))
    _holds_no_secret(json.dumps({name: folder[name].to_list() for name in folder}, ensure_ascii=False))
    assert "<EMAIL>" in json.dumps(folder["kto"].to_list()) and "<EMAIL>" in folder["comparisons"][0]["prompt"]
    assert "<EMAIL>" in (out / "README.md").read_text(encoding="utf-8")  # the card says what was scrubbed


def test_thumbtune_export_follows_the_setting(settings_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(settings_env)
    chat = thumbtune(["run"], env, stdin=f"my mail is {SECRETS['email']}\n+\n")
    assert chat.returncode == 0, chat.stderr

    def exported(redact: str | None) -> str:
        run_env = dict(env) if redact is None else {**env, "THUMBTUNE_REDACT": redact}
        out = tmp_path / "kto.jsonl"
        result = thumbtune(["export", "--format", "kto", "--out", str(out)], run_env)
        assert result.returncode == 0, result.stderr
        return out.read_text(encoding="utf-8")

    assert "<EMAIL>" in exported(None) and SECRETS["email"] not in exported(None)
    assert SECRETS["email"] in exported("off")  # for people who know their data
