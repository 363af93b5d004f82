"""The dialogue template GPT-2 is prompted with, shared by the bot and the trainer.

GPT-2 is not a chat model, so a conversation is written out as alternating
``User:`` / ``Bot:`` lines and the model continues after the last ``Bot:``. The
answer ends where the model starts the next turn. The trainer rebuilds prompts
with these same functions, so it learns on exactly what the bot showed the model.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

USER = "User:"
BOT = "Bot:"

# The next turn marker at a line start, wherever the model writes it.
_NEXT_TURN = re.compile(r"(?:^|\n)\s*(?:User|Bot)\s*:", re.IGNORECASE)


def clean(text: str) -> str:
    """One person's text as one template line: every run of whitespace (Unicode line
    separators included) becomes one space, so a message cannot forge a new turn."""
    return " ".join(text.split())


def render_prompt(question: str, history: Iterable[tuple[str, str]] = ()) -> str:
    """The text the model continues: earlier (user, bot) turns, the question, then ``Bot:``."""
    lines = []
    for user_text, bot_text in history:
        lines.append(f"{USER} {clean(user_text)}")
        lines.append(f"{BOT} {clean(bot_text)}")
    lines.append(f"{USER} {clean(question)}")
    lines.append(BOT)
    return "\n".join(lines)


def parse_prompt(context: str) -> tuple[list[tuple[str, str]], str] | None:
    """The earlier (user, bot) turns and the question of a text :func:`render_prompt` wrote;
    None for any other text. Every turn is one line (see :func:`clean`), so lines suffice."""
    lines = context.split("\n")
    if len(lines) < 2 or len(lines) % 2 or lines[-1] != BOT or not lines[-2].startswith(USER):
        return None
    turns = []
    for user_line, bot_line in zip(lines[:-2:2], lines[1:-2:2], strict=True):
        if not user_line.startswith(USER) or not bot_line.startswith(BOT):
            return None
        turns.append((user_line[len(USER) :].strip(), bot_line[len(BOT) :].strip()))
    return turns, lines[-2][len(USER) :].strip()


def without_turns(context: str, turns: Collection[tuple[str, str]], *, question: str) -> str:
    """``context`` rendered again without the earlier ``turns`` ((user, bot) texts as
    :func:`clean` writes them). A text that is not a rendered dialogue becomes ``question``
    alone: nothing of it is kept that could not be told apart."""
    parsed = parse_prompt(context)
    if parsed is None:
        return render_prompt(question)
    history, asked = parsed
    return render_prompt(asked, [turn for turn in history if turn not in turns])


def _answer_end(continuation: str) -> int | None:
    """Where the answer ends: at the next turn marker or a blank line (which also ends a
    turn in the template's training text), whichever comes first; None if neither yet."""
    marker = _NEXT_TURN.search(continuation)
    ends = [marker.start()] if marker else []
    blank = continuation.find("\n\n")
    if blank >= 0:
        ends.append(blank)
    return min(ends, default=None)


def answer_is_over(continuation: str) -> bool:
    """Whether the model has started the next turn (so ``cut_answer`` cuts before the end)."""
    return _answer_end(continuation) is not None


def cut_answer(continuation: str) -> str:
    """The model's answer: its continuation up to the next turn, trimmed."""
    return " ".join(continuation[: _answer_end(continuation)].split())
