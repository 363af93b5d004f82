"""`python -m bench.redact [--texts N] [--dirty SHARE] [--seed S]`: how fast the scrubber is.

A seeded, realistic mix of chat texts: lines of the shipped dialogues and everyday team
chat with numbers that are *not* personal data (times, prices, versions, dates, private
addresses), and a share (``--dirty``, default 10%) with one planted value each: an API key
or token, an e-mail address, a phone number, a card number, an IBAN, a US SSN, a public IP
address, made valid by the same libraries that check them. On one thread, with every kind
on (``THUMBTUNE_REDACT``'s default), it measures:

- ``texts_per_s``: ``Redactor.redact`` over the mix (the median of 3 passes);
- ``answers_10000_s``: scrubbing the dataset of a run of 10,000 answers
  (``trainer.dataset.scrubbed``: every prompt, a rendered dialogue of up to 3 turns, and
  every answer), as the bot does before writing a snapshot;
- ``planted_found``: the share of planted values that are gone after scrubbing, and
  ``clean_changed``: clean texts the scrubber changed (false positives).

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import random
import string
import time
from collections.abc import Callable

from bench.common import emit, median
from bot.tinymodel import shipped_dialogues
from storage.dialogue import dialogue_turns, render_prompt
from storage.redact import KINDS, Redactor
from trainer.dataset import Example, FeedbackDataset, scrubbed

EVERYDAY = [
    "The stand-up moved to 10:30 tomorrow, room 4.",
    "It costs 12.99 a month, or 129 for the year.",
    "We shipped version 2.14.1 on 2024-03-05; the old release tag was v1.2.3.4.",
    "Restart the router at 192.168.1.1 and wait 30 seconds.",
    "Order 48213 left the warehouse on the 3rd, 2 boxes, 14 kg.",
    "Page 312 of the manual, section 4.2, says to use 3 spaces.",
    "The build took 1843 seconds, 20% more than last week.",
    "Use port 8080 locally and 443 in production.",
]
_ALNUM = string.ascii_letters + string.digits


def _api_key(rng: random.Random) -> str:
    return rng.choice(
        [
            "sk-live-" + "".join(rng.choices(_ALNUM, k=24)),
            f"xoxb-{rng.randrange(10**11, 10**12)}-{rng.randrange(10**12, 10**13)}-"
            + "".join(rng.choices(_ALNUM, k=24)),
            "ghp_" + "".join(rng.choices(_ALNUM, k=36)),
            "AKIA" + "".join(rng.choices(string.ascii_uppercase + string.digits, k=16)),
        ]
    )


def _email(rng: random.Random) -> str:
    name = rng.choice(["jane", "omar", "li.wei", "sam_k", "ana-maria"])
    return f"{name}{rng.randrange(100)}@{rng.choice(['example.org', 'mail.co.uk', 'corp.example.com'])}"


def _phone(rng: random.Random) -> str:
    import phonenumbers

    region = rng.choice(["US", "GB", "DE", "FR"])
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    assert example is not None
    while True:
        national = str(example.national_number)
        phone = phonenumbers.parse(national[:-3] + f"{rng.randrange(1000):03d}", region)
        if phonenumbers.is_valid_number(phone):
            form = rng.choice([phonenumbers.PhoneNumberFormat.INTERNATIONAL, phonenumbers.PhoneNumberFormat.NATIONAL])
            return phonenumbers.format_number(phone, form)


def _card(rng: random.Random) -> str:
    from stdnum import luhn

    body = "4" + "".join(rng.choices(string.digits, k=14))
    digits = body + luhn.calc_check_digit(body)
    return " ".join(digits[i : i + 4] for i in range(0, 16, 4))


def _iban(rng: random.Random) -> str:
    from stdnum import iban

    account = "".join(rng.choices(string.digits, k=18))
    number = "DE" + iban.calc_check_digits("DE00" + account) + account
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4))


def _national_id(rng: random.Random) -> str:
    from stdnum.us import ssn

    while True:
        value = f"{rng.randrange(1, 900):03d}-{rng.randrange(1, 100):02d}-{rng.randrange(1, 10000):04d}"
        if ssn.is_valid(value):
            return value


def _ip_address(rng: random.Random) -> str:
    first = rng.choice([23, 51, 81, 93, 145, 185])  # public ranges
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


# One valid value of each kind, as people write it.
PLANTERS: dict[str, Callable[[random.Random], str]] = {
    "api_key": _api_key,
    "email": _email,
    "phone": _phone,
    "card": _card,
    "iban": _iban,
    "national_id": _national_id,
    "ip_address": _ip_address,
}
PLANTED = tuple(PLANTERS)


def planted_value(kind: str, rng: random.Random) -> str:
    """One valid value of ``kind``, as people write it."""
    if kind not in PLANTERS:
        raise ValueError(kind)
    return PLANTERS[kind](rng)


def texts_mix(count: int, *, dirty: float, seed: int) -> tuple[list[str], list[str | None]]:
    """``count`` texts and, for each, the value planted in it (None for a clean text)."""
    rng = random.Random(seed)
    chat = [line for turn in dialogue_turns(shipped_dialogues()) for line in turn]
    texts: list[str] = []
    planted: list[str | None] = []
    for _ in range(count):
        pieces = [rng.choice(chat) for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.3:
            pieces.append(rng.choice(EVERYDAY))
        value = None
        if rng.random() < dirty:
            value = planted_value(rng.choice(PLANTED), rng)
            pieces.insert(rng.randrange(len(pieces) + 1), rng.choice(["mine is", "use", "it is", "try"]) + f" {value}.")
        texts.append(" ".join(pieces))
        planted.append(value)
    return texts, planted


def run_dataset(texts: list[str], answers: int, seed: int) -> FeedbackDataset:
    """A run's dataset of ``answers`` examples: each prompt a rendered dialogue of 1-3 turns."""
    rng = random.Random(seed)
    examples = []
    for n in range(answers):
        turns = [(rng.choice(texts), rng.choice(texts)) for _ in range(rng.randint(0, 2))]
        prompt = render_prompt(rng.choice(texts), history=turns)
        examples.append(Example(prompt, " " + rng.choice(texts), n % 3 != 0, f"p:{n}"))
    return FeedbackDataset(train=tuple(examples), held_out=(), train_pairs=(), held_out_pairs=())


def measure(count: int, *, dirty: float, seed: int) -> dict[str, float | int]:
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    redactor = Redactor.from_kinds(KINDS)
    redactor.redact("warm up: +44 20 7946 0958 jane@example.org")
    build_s = time.perf_counter() - started
    texts, planted = texts_mix(count, dirty=dirty, seed=seed)

    passes = []
    for _ in range(3):
        started = time.perf_counter()
        out = [redactor.redact(text) for text in texts]
        passes.append(time.perf_counter() - started)
    found = [value not in after for value, after in zip(planted, out, strict=True) if value is not None]
    changed = [after != text for value, text, after in zip(planted, texts, out, strict=True) if value is None]

    dataset = run_dataset(texts, 10_000, seed)
    started = time.perf_counter()
    scrubbed(dataset, redactor)
    answers_s = time.perf_counter() - started
    return {
        "texts": count,
        "dirty_share": dirty,
        "mean_chars": round(sum(map(len, texts)) / count, 1),
        "texts_per_s": round(count / median(passes)),
        "answers_10000_s": round(answers_s, 3),
        "planted_found": round(sum(found) / max(len(found), 1), 4),
        "planted": len(found),
        "clean_changed": sum(changed),
        "build_s": round(build_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=10_000, help="texts in the mix")
    parser.add_argument("--dirty", type=float, default=0.1, help="share of texts with a planted secret")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    emit(measure(args.texts, dirty=args.dirty, seed=args.seed))


if __name__ == "__main__":
    main()
