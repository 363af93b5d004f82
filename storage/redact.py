"""Secrets and personal data found in a text and replaced by typed placeholders (``<EMAIL>``).

Applied where texts leave the database (a run snapshot, an export, a version's
``changes.json``), so a model learns the shape of an answer and never the value; the
database itself keeps the raw text. As in Microsoft Presidio, *detection* (recognizers
that report a kind and a span) is kept apart from the *operator* (:func:`replace`, which
puts ``<KIND>`` where each finding was): a recognizer can be tested on its own and the
policy (:data:`KINDS`, the ``THUMBTUNE_REDACT`` setting) stays a list of names.

The detectors are maintained libraries, with a cheap pattern in front of each so that
most texts (plain chat) never reach the slower checks:

- ``api_key``: detect-secrets' own patterns (Slack, AWS, Stripe, GitHub, GitLab,
  OpenAI, Discord, Twilio, SendGrid, JWT, private keys, passwords in URLs...), plus
  keys with a known prefix (``sk-``, ``xapp-``, ``hf_``...), a value after ``password:``
  or ``api_key=``, and long random-looking tokens (detect-secrets' Shannon entropy);
- ``email``: an address pattern (the local part and a domain with a top-level label);
- ``phone``: Google's libphonenumber (``phonenumbers.PhoneNumberMatcher``, numbers that
  are valid in their region: international form anywhere, national form for
  :data:`PHONE_REGIONS`);
- ``card``: 13 to 19 digits of a payment card's issuer range that pass the Luhn check
  (python-stdnum);
- ``iban``: country format and the ISO 7064 check digits (python-stdnum);
- ``national_id``: US SSN, Spanish DNI/NIE, Italian codice fiscale, French NIR, German
  tax id, Indian Aadhaar, Brazilian CPF, Canadian SIN, each with its check digits
  (python-stdnum);
- ``ip_address``: IPv4 and IPv6 addresses that are public (``ipaddress``: a private,
  loopback or documentation address points at nobody); ``v1.2.3.4`` and
  ``version 1.2.3.4`` are versions, not addresses.

Names, street addresses and other personal data in free text are not detected.
Storage imports nothing of ours; the libraries are imported when a redactor is built.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# In the order of precedence when two findings overlap (a key holding digits is a key, not a phone).
KINDS: tuple[str, ...] = ("api_key", "email", "iban", "card", "national_id", "ip_address", "phone")
PHONE_REGIONS: tuple[str, ...] = ("US", "GB", "DE", "FR", "IN")


def placeholder(kind: str) -> str:
    """What a finding of ``kind`` is replaced with: ``<API_KEY>``, ``<EMAIL>``..."""
    return f"<{kind.upper()}>"


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int


class Recognizer(Protocol):
    kind: str

    def find(self, text: str) -> Iterable[tuple[int, int]]:
        """The spans (start, end) of what this recognizer detects in ``text``."""
        ...


def replace(text: str, findings: Sequence[Finding]) -> str:
    """The operator: each (non-overlapping, sorted) finding replaced by its placeholder."""
    parts, at = [], 0
    for finding in findings:
        parts += [text[at : finding.start], placeholder(finding.kind)]
        at = finding.end
    parts.append(text[at:])
    return "".join(parts)


class Redactor:
    """Finds what its recognizers detect and replaces it by placeholders; no recognizers: off."""

    def __init__(self, recognizers: Sequence[Recognizer]) -> None:
        self.recognizers = tuple(sorted(recognizers, key=lambda r: KINDS.index(r.kind) if r.kind in KINDS else 99))

    @classmethod
    def from_kinds(cls, kinds: Iterable[str]) -> Redactor:
        """A redactor for these kinds (of :data:`KINDS`); built once per set of kinds."""
        return _redactor(frozenset(kinds))

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.kind for r in self.recognizers))

    def __bool__(self) -> bool:
        return bool(self.recognizers)

    def findings(self, text: str) -> list[Finding]:
        """What is found in ``text``, sorted; where two overlap, the earlier kind of :data:`KINDS` wins,
        then the longer span."""
        taken: list[Finding] = []
        for recognizer in self.recognizers:
            spans = sorted(recognizer.find(text), key=lambda span: (span[0] - span[1], span[0]))
            for start, end in spans:
                if start < end and not any(start < t.end and t.start < end for t in taken):
                    taken.append(Finding(recognizer.kind, start, end))
        return sorted(taken, key=lambda finding: finding.start)

    def redact(self, text: str) -> str:
        """``text`` with every finding replaced by its placeholder (the same text when none)."""
        if not self.recognizers or not text:
            return text
        found = self.findings(text)
        return replace(text, found) if found else text

    def __call__(self, text: str) -> str:
        return self.redact(text)


@functools.lru_cache(maxsize=16)
def _redactor(kinds: frozenset[str]) -> Redactor:
    unknown = kinds - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kinds {', '.join(sorted(unknown))}; known: {', '.join(KINDS)}")
    builders: dict[str, Callable[[], Recognizer]] = {
        "api_key": ApiKeyRecognizer,
        "email": EmailRecognizer,
        "iban": IbanRecognizer,
        "card": CardRecognizer,
        "national_id": NationalIdRecognizer,
        "ip_address": IpAddressRecognizer,
        "phone": PhoneRecognizer,
    }
    return Redactor([builders[kind]() for kind in KINDS if kind in kinds])


def parse_kinds(value: str) -> tuple[str, ...]:
    """The kinds a setting names: ``all`` (or ``on``), ``off`` (or ``none``), or a comma list of
    :data:`KINDS`; ``ValueError`` naming what is wrong."""
    text = value.strip().lower()
    if text in ("", "all", "on", "true", "1", "yes"):
        return KINDS
    if text in ("off", "none", "false", "0", "no"):
        return ()
    named = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in named if item not in KINDS]
    if unknown:
        raise ValueError(f"unknown kind {unknown[0]!r}: expected all, off, or a comma list of {', '.join(KINDS)}")
    return tuple(kind for kind in KINDS if kind in named)


# --- recognizers ----------------------------------------------------------------------
_DIGITS = re.compile(r"\d")
_LETTER = re.compile(r"[A-Za-z]")


class ApiKeyRecognizer:
    """Keys, tokens and passwords: detect-secrets' detectors, known key prefixes, a value after a
    keyword such as ``password:``, and long random-looking tokens."""

    kind = "api_key"
    # Prefixes of keys that detect-secrets' patterns do not cover (its OpenAI pattern wants the
    # legacy T3BlbkFJ marker; Slack app-level tokens; Hugging Face, Google, npm, Stripe test keys).
    PREFIXED = re.compile(
        r"(?<![\w-])(?:sk|pk|rk)[-_](?:live|test|proj|ant|or)?[-_]?[A-Za-z0-9_-]{16,}"
        r"|(?<![\w-])(?:xapp|xoxe)-[A-Za-z0-9-]{20,}"
        r"|(?<![\w-])(?:hf|npm|glpat|ghp|github_pat|pypi)[-_][A-Za-z0-9_-]{20,}"
        r"|(?<![\w-])AIza[0-9A-Za-z_-]{35}"
    )
    # A value after a keyword: "password: hunter22", "api_key=abc123...", "my token is 0a1b2c..."
    KEYWORD = re.compile(
        r"(?i)\b(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[ _-]?key|access[ _-]?key|private[ _-]?key)"
        r"(?:\s+is|\s*[:=]+)\s*[\"']?([^\s\"',;]{6,})"
    )
    # Long tokens for the entropy check: letters and digits mixed, as keys are.
    TOKEN = re.compile(r"(?<![\w+/-])[A-Za-z0-9_+/-]{24,}={0,2}(?![\w+/=-])")
    LONG = re.compile(r"[\w+/=-]{10,}")
    REST = re.compile(r"[\w+/=-]*(?:\.[\w+/=-]+)*")
    ENTROPY = 3.8  # bits per character; random base62 of 24 characters has ~4.2, English words ~3

    def __init__(self, *, prefilter: bool = True) -> None:
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
        from detect_secrets.plugins.base import RegexBasedDetector
        from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString

        # Every pattern-based detector detect-secrets ships, except the public-IP one (ip_address
        # is its own kind here); checks such as a JWT's decodable header stay the library's.
        shipped: dict[str, Any] = dict(get_mapping_from_secret_type_to_class())
        plugins: list[type[RegexBasedDetector]] = [
            plugin
            for plugin in shipped.values()
            if issubclass(plugin, RegexBasedDetector) and plugin.__name__ != "IPPublicDetector"
        ]
        self._detectors = [plugin() for plugin in plugins]
        self._entropy = Base64HighEntropyString(limit=self.ENTROPY).calculate_shannon_entropy
        self.prefilter = prefilter  # off: every text goes through every detector (tests compare)

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        if self.prefilter and not self._suspect(text):
            yield from self._keyword(text)  # the only pattern that needs no long token
            return
        for start, end in self._spans(text):
            # A pattern may stop inside a key (a JWT's signature after its lazy match): to its end.
            rest = self.REST.match(text, end)
            yield start, rest.end() if rest else end

    def _spans(self, text: str) -> Iterator[tuple[int, int]]:
        for detector in self._detectors:
            for secret in set(detector.analyze_string(text)):
                yield from _occurrences(text, secret)
        for match in self.PREFIXED.finditer(text):
            yield match.span()
        yield from self._keyword(text)
        for match in self.TOKEN.finditer(text):
            token = match.group(0)
            if _looks_random(token) and self._entropy(token) >= self.ENTROPY:
                yield match.span()

    def _keyword(self, text: str) -> Iterator[tuple[int, int]]:
        for match in self.KEYWORD.finditer(text):
            value = match.group(1)
            if not value.startswith("<") and (_DIGITS.search(value) or not value.isalpha()):
                yield match.span(1)

    def _suspect(self, text: str) -> bool:
        """Could any pattern but the keyword one match? Each wants a run of 10+ key characters
        with letters that is not a plain word (a digit, ``_``, ``-``, or a capital after the first
        letter in it), a private key's header or a URL with a password. Most chat has none."""
        if "PRIVATE KEY" in text or ("://" in text and "@" in text):
            return True
        for match in self.LONG.finditer(text):
            word = match.group(0)
            if (not word.isalpha() or not word[1:].islower()) and _LETTER.search(word):
                return True
        return False


def _looks_random(token: str) -> bool:
    digits = sum(c.isdigit() for c in token)
    letters = sum(c.isalpha() for c in token)
    return digits >= 2 and letters >= 4


class EmailRecognizer:
    kind = "email"
    PATTERN = re.compile(
        r"(?<![\w.+-])[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
        r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![\w-])"
    )

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        if "@" in text:
            for match in self.PATTERN.finditer(text):
                yield match.span()


class PhoneRecognizer:
    """Phone numbers that libphonenumber finds valid: international form (+44 ...) in any
    country, national form in :data:`PHONE_REGIONS`."""

    kind = "phone"
    # 7+ digits close together, a leading + or ( and a trailing extension included: only these
    # stretches (and a few characters around them) go to the matcher, not the whole text.
    CANDIDATE = re.compile(r"\+?\(?(?:\d[\s()./-]{0,3}){6,}\d(?:\s*(?:ext\.?|x|#)\s*\d{1,6})?", re.IGNORECASE)
    AROUND = 3

    def __init__(self, regions: Sequence[str] = PHONE_REGIONS) -> None:
        import phonenumbers

        self._matcher = phonenumbers.PhoneNumberMatcher
        self._leniency = phonenumbers.Leniency.VALID
        self.regions = tuple(regions)

    # Shapes libphonenumber turns down anyway, left out before it spends time in every region on them.
    NOT_PHONE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        for candidate in self.CANDIDATE.finditer(text):
            if self.NOT_PHONE.fullmatch(candidate.group(0).strip(" .-")):
                continue
            # The matcher looks at the characters just outside a number (a letter there: no number).
            start, end = max(0, candidate.start() - self.AROUND), candidate.end() + self.AROUND
            window = text[start:end]
            # An international number (+44 ...) is the same in every region: one pass.
            regions = self.regions[:1] if candidate.group(0).startswith("+") else self.regions
            for region in regions:
                for match in self._matcher(window, region, leniency=self._leniency):
                    yield start + match.start, start + match.end


class CardRecognizer:
    """13 to 19 digits (spaces or dashes between groups) that start like a payment card (2-6)
    and pass the Luhn check."""

    kind = "card"
    CANDIDATE = re.compile(r"(?<![\d.,-])[2-6]\d{3}(?:[ -]?\d){9,15}(?![\d-])")

    def __init__(self) -> None:
        from stdnum import luhn

        self._luhn = luhn.is_valid

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        for match in self.CANDIDATE.finditer(text):
            digits = re.sub(r"\D", "", match.group(0))
            if 13 <= len(digits) <= 19 and self._luhn(digits):
                yield match.span()


class IbanRecognizer:
    """A country code, two check digits and the account (in groups or not), valid for its country."""

    kind = "iban"
    CANDIDATE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")

    def __init__(self) -> None:
        from stdnum import iban

        self._valid = iban.is_valid

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        for match in self.CANDIDATE.finditer(text):
            # The pattern may run on into a following word in capitals: the longest valid prefix.
            candidate = match.group(0)
            for end in range(len(candidate), 14, -1):
                if candidate[end - 1] != " " and self._valid(candidate[:end]):
                    yield match.start(), match.start() + end
                    break


class NationalIdRecognizer:
    """National identity and tax numbers in their usual written form, with their check digits."""

    kind = "national_id"

    def __init__(self) -> None:
        from stdnum.br import cpf
        from stdnum.ca import sin
        from stdnum.de import idnr
        from stdnum.es import dni, nie
        from stdnum.fr import nir
        from stdnum.in_ import aadhaar
        from stdnum.it import codicefiscale
        from stdnum.us import ssn

        def shaped(pattern: str) -> re.Pattern[str]:
            return re.compile(rf"(?<![\w.-]){pattern}(?![\w-]|\.\d)")

        self._checks: list[tuple[re.Pattern[str], Callable[[str], bool]]] = [
            (shaped(r"\d{3}-\d{2}-\d{4}"), ssn.is_valid),  # US SSN, as written (9 bare digits are too common)
            (shaped(r"\d{8}-?[A-Z]"), dni.is_valid),
            (shaped(r"[XYZ]-?\d{7}-?[A-Z]"), nie.is_valid),
            (
                shaped(r"[A-Z]{6}[0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]"),
                codicefiscale.is_valid,
            ),
            (shaped(r"[12] ?\d{2} ?\d{2} ?(?:\d{2}|2A|2B) ?\d{3} ?\d{3} ?\d{2}"), nir.is_valid),
            (shaped(r"\d{2} ?\d{3} ?\d{3} ?\d{3}"), idnr.is_valid),
            (shaped(r"[2-9]\d{3} ?\d{4} ?\d{4}"), aadhaar.is_valid),
            (shaped(r"\d{3}\.\d{3}\.\d{3}-\d{2}"), cpf.is_valid),
            (shaped(r"\d{3}[ -]\d{3}[ -]\d{3}"), sin.is_valid),
        ]

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        if not _DIGITS.search(text):
            return
        for pattern, valid in self._checks:
            for match in pattern.finditer(text):
                if valid(match.group(0)):
                    yield match.span()


class IpAddressRecognizer:
    """Public IPv4 and IPv6 addresses (``ipaddress`` decides what is valid and public)."""

    kind = "ip_address"
    V4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
    V6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
    VERSION = re.compile(r"(?i)(?:\bv|\bversion\s*|\bver\.?\s*)$")

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        if "." in text:
            for match in self.V4.finditer(text):
                if not self.VERSION.search(text, max(0, match.start() - 10), match.start()) and _public(match.group(0)):
                    yield match.span()
        if text.count(":") >= 2:
            for match in self.V6.finditer(text):
                if _public(match.group(0)):
                    yield match.span()


def _public(candidate: str) -> bool:
    try:
        return ipaddress.ip_address(candidate).is_global
    except ValueError:
        return False


def _occurrences(text: str, value: str) -> Iterator[tuple[int, int]]:
    at = text.find(value)
    while at >= 0:
        yield at, at + len(value)
        at = text.find(value, at + 1)
