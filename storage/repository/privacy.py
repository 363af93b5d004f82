"""Privacy: forgetting a person, blanking texts past retention, and telling which quoted
texts the database still holds (so files made from it can drop the others)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable

from storage.database import Connection
from storage.dialogue import clean, render_prompt, without_turns
from storage.repository.base import Queries
from storage.repository.rows import ForgetCounts

log = logging.getLogger(__name__)
_PLACEHOLDER = re.compile(r"<[A-Z_]+>")  # storage.redact's placeholders


class PrivacyQueries(Queries):
    async def forget_person(self, person: str) -> ForgetCounts:
        """Delete one person's prompts (with the answers to them), votes, corrections and
        implicit signals (their replies read as feedback, retries, rephrasings).

        In the same transaction: their tombstone (person key and time; a second forget
        moves it) keeps votes on answers posted before it from ever being stored again
        (:meth:`record_vote`), and other people's prompts in the same conversations have
        the person's turns (their questions and the bot's answers to them) taken out of
        their stored dialogue. Then the WAL is checkpointed and truncated, so with
        ``secure_delete`` on no copy of the deleted text stays in the files.
        """
        async with self.database.transaction() as db:
            await self.database.hold(db, f"person:{person}")  # a vote of theirs in another process waits
            await db.execute(
                "INSERT INTO forgotten_people (person, forgotten_at) VALUES (?, ?)"
                " ON CONFLICT (person) DO UPDATE SET forgotten_at = excluded.forgotten_at",
                (person, time.time()),
            )
            texts = await _texts_of(db, person)
            contexts = await _scrub_contexts(db, person)
            votes = (await db.execute("DELETE FROM votes WHERE voter = ?", (person,))).rowcount
            corrections = (await db.execute("DELETE FROM corrections WHERE author = ?", (person,))).rowcount
            signals = (await db.execute("DELETE FROM implicit_signals WHERE person = ?", (person,))).rowcount
            # Answers to their prompts go too (ON DELETE CASCADE), with others' votes on them.
            prompts = (await db.execute("DELETE FROM prompts WHERE author = ?", (person,))).rowcount
            # Prompts of theirs not answered yet are dropped, with the platform id kept for them.
            await db.execute("DELETE FROM pending_prompts WHERE author = ?", (person,))
        wiped = await self.database.checkpoint()
        if not wiped:
            log.warning(
                "forget: deleted rows are not all wiped yet (another reader); a later checkpoint or VACUUM does it"
            )
        return ForgetCounts(
            prompts=prompts,
            votes=votes,
            corrections=corrections,
            signals=signals,
            contexts=contexts,
            wiped=wiped,
            texts=texts,
        )

    async def purge_texts_before(self, cutoff: float) -> int:
        """Blank prompt, answer, correction and reply texts older than ``cutoff`` (a Unix time).

        Rows, versions and votes stay, so per-version counts remain; the words are gone.
        Returns the number of prompts purged.
        """
        async with self.database.transaction() as db:
            cursor = await db.execute(
                "UPDATE prompts SET text = '', context = '' WHERE created_at < ? AND (text != '' OR context != '')",
                (cutoff,),
            )
            await db.execute("UPDATE responses SET text = '' WHERE created_at < ? AND text != ''", (cutoff,))
            await db.execute("UPDATE corrections SET text = '' WHERE created_at < ? AND text != ''", (cutoff,))
            await db.execute("UPDATE implicit_signals SET text = '' WHERE created_at < ? AND text != ''", (cutoff,))
        return cursor.rowcount

    async def kept_prompts(self, texts: Iterable[str], *, redact: Callable[[str], str] | None = None) -> set[str]:
        """Those of ``texts`` that some stored prompt still says (not blanked, not forgotten).

        With ``redact`` (storage.redact), a text holding placeholders (``<EMAIL>``: a quote
        from a scrubbed file) is kept while a stored prompt scrubs to exactly it."""
        wanted = sorted({text for text in texts if text})
        kept: set[str] = set()
        async with self.database.reading() as db:
            for start in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
                chunk = wanted[start : start + 500]
                cursor = await db.execute(
                    f"SELECT DISTINCT text FROM prompts WHERE text IN ({', '.join('?' * len(chunk))})", chunk
                )
                kept.update(str(row[0]) for row in await cursor.fetchall())
            for text in wanted:
                if text in kept or redact is None or not _PLACEHOLDER.search(text):
                    continue
                like = "%".join(_like_escaped(part) for part in _PLACEHOLDER.split(text))
                cursor = await db.execute(
                    "SELECT DISTINCT text FROM prompts WHERE text LIKE ? ESCAPE '\\' LIMIT 100", (like,)
                )
                if any(redact(str(row[0])) == text for row in await cursor.fetchall()):
                    kept.add(text)
        return kept


def _like_escaped(text: str) -> str:
    """``text`` matched literally by LIKE ... ESCAPE '\\'."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def _texts_of(db: Connection, person: str) -> frozenset[str]:
    """What they wrote (prompts and corrections), as turns are written. Not the bot's answers
    to them: an example holding one holds their prompt too, and the same sentence said to
    someone else is not theirs."""
    cursor = await db.execute(
        "SELECT text FROM prompts WHERE author = ? UNION SELECT text FROM corrections WHERE author = ?",
        (person, person),
    )
    return frozenset(cleaned for (text,) in await cursor.fetchall() if (cleaned := clean(text)))


async def _scrub_contexts(db: Connection, person: str) -> int:
    """Take ``person``'s turns out of the stored dialogue of other people's later prompts in
    the conversations they took part in; how many prompts changed.

    A turn is recognised by its texts (question and first answer, as the dialogue shows
    them). Where the person's texts were already blanked by retention they cannot be
    recognised: those later prompts keep only their own question.
    """
    cursor = await db.execute(
        "SELECT p.id, p.conversation, p.text, coalesce(r.text, '') FROM prompts p"
        " LEFT JOIN responses r ON r.prompt_id = p.id AND r.candidate = 0"
        " WHERE p.author = ? AND p.conversation IS NOT NULL",
        (person,),
    )
    theirs: dict[str, tuple[int, set[tuple[str, str]], bool]] = {}
    for prompt_id, conversation, text, answer in await cursor.fetchall():
        first, turns, blind = theirs.get(conversation, (prompt_id, set(), False))
        turns.add((clean(text), clean(answer)))
        theirs[conversation] = (min(first, prompt_id), turns, blind or not text)
    changed = 0
    for conversation, (first, turns, blind) in theirs.items():
        cursor = await db.execute(
            "SELECT id, text, context FROM prompts WHERE conversation = ? AND id > ? AND author != ? AND context != ''",
            (conversation, first, person),
        )
        for prompt_id, text, context in await cursor.fetchall():
            scrubbed = render_prompt(text) if blind else without_turns(context, turns, question=text)
            if scrubbed != context:
                await db.execute("UPDATE prompts SET context = ? WHERE id = ?", (scrubbed, prompt_id))
                changed += 1
    return changed
