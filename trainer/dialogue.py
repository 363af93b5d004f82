"""The dialogue template GPT-2 is prompted with, shared by the bot and the trainer.

GPT-2 is not a chat model, so a conversation is written out as alternating
``User:`` / ``Bot:`` lines and the model continues after the last ``Bot:``. The
answer ends where the model starts the next turn. The trainer rebuilds prompts
with these same functions, so it learns on exactly what the bot showed the model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

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


def answer_is_over(continuation: str) -> bool:
    """Whether the model has started the next turn (so ``cut_answer`` will cut here)."""
    return bool(_NEXT_TURN.search(continuation)) or "\n\n" in continuation


def cut_answer(continuation: str) -> str:
    """The model's answer: its continuation up to the next turn marker, trimmed."""
    match = _NEXT_TURN.search(continuation)
    if match:
        continuation = continuation[: match.start()]
    # A blank line also ends a turn in the template's training text.
    continuation = continuation.split("\n\n", 1)[0]
    return " ".join(continuation.split())
