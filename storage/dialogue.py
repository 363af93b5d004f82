"""The dialogue template, shared by the bot and the trainer.

A conversation is stored as alternating ``User:`` / ``Bot:`` lines ending with ``Bot:``
(the prompt's ``context``), whatever model answered it. GPT-2 is not a chat model: it is
shown exactly that text, continues after the last ``Bot:``, and its answer ends where it
starts the next turn. A model whose tokenizer has a chat template (an instruct model) is
shown the same turns through ``apply_chat_template``, and its answer ends at its
end-of-turn token (:class:`ModelDialogue`). The trainer rebuilds prompts with these same
functions, so it learns on exactly what the bot showed the model.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

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


def says_any(text: str, texts: Collection[str]) -> bool:
    """Whether ``text`` (a stored dialogue, an answer, a quoted question) holds one of
    ``texts`` (as :func:`clean` writes them) as a whole turn or as the whole text."""
    if not texts:
        return False
    if clean(text) in texts:
        return True
    parsed = parse_prompt(text)
    if parsed is None:
        return False
    history, asked = parsed
    return asked in texts or any(user in texts or bot in texts for user, bot in history)


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


def dialogue_turns(text: str) -> list[tuple[str, str]]:
    """The (user, bot) turns of a whole written-out dialogue (``User:`` / ``Bot:`` lines,
    as in the tiny model's training text); lines of any other shape are skipped."""
    turns: list[tuple[str, str]] = []
    asked: str | None = None
    for line in text.splitlines():
        if line.startswith(USER):
            asked = line[len(USER) :].strip()
        elif line.startswith(BOT) and asked is not None:
            turns.append((asked, line[len(BOT) :].strip()))
            asked = None
    return turns


def chat_messages(history: Iterable[tuple[str, str]], question: str | None = None) -> list[dict[str, str]]:
    """Turns as the ``messages`` of ``apply_chat_template``."""
    messages = []
    for user_text, bot_text in history:
        messages.append({"role": "user", "content": user_text})
        messages.append({"role": "assistant", "content": bot_text})
    if question is not None:
        messages.append({"role": "user", "content": question})
    return messages


@dataclass(frozen=True)
class AnswerBatch:
    """Token rows of (dialogue, answer) pairs: ``ids`` and ``mask`` [rows, width], right-padded;
    row i's answer is tokens ``starts[i]`` to ``lengths[i]`` (exclusive)."""

    ids: Any
    mask: Any
    starts: tuple[int, ...]
    lengths: tuple[int, ...]


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):  # up to the shorter one
        if x != y:
            break
        n += 1
    return n


class ModelDialogue:
    """How one model is shown a stored dialogue and where its answer ends.

    Without a chat template (GPT-2): the stored ``User:`` / ``Bot:`` text itself, the
    answer cut at the next turn. With one: the tokenizer's chat template with the
    generation prompt (special tokens are in the rendered text, so tokenize it with
    ``add_special_tokens``); the answer is everything before the end-of-turn token.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.chat = bool(getattr(tokenizer, "chat_template", None))
        self.add_special_tokens = not self.chat  # the template writes BOS and the like itself

    def prompt(self, context: str) -> str:
        """The text the model continues for a stored dialogue ``context``."""
        if not self.chat:
            return context
        return str(
            self.tokenizer.apply_chat_template(self.messages(context), add_generation_prompt=True, tokenize=False)
        )

    def completion(self, context: str, answer: str) -> str:
        """The text that follows :meth:`prompt` when the model gives ``answer`` and ends its
        turn: `` answer`` after ``Bot:``; for a chat template, the answer and the end of the
        turn as the template writes them."""
        if not self.chat:
            return " " + clean(answer)
        prompt = self.prompt(context)
        whole = str(
            self.tokenizer.apply_chat_template(
                [*self.messages(context), {"role": "assistant", "content": answer.strip()}], tokenize=False
            )
        )
        if whole.startswith(prompt):
            return whole[len(prompt) :]
        return answer.strip() + str(self.tokenizer.eos_token or "")

    def answer(self, continuation: str) -> str:
        """The answer in the model's decoded continuation (special tokens already skipped)."""
        return continuation.strip() if self.chat else cut_answer(continuation)

    def is_over(self, continuation: str) -> bool:
        """Whether the answer is complete before the model's end-of-turn token: a GPT-2
        starting the next ``User:`` turn; a chat model ends its turn with a token."""
        return False if self.chat else answer_is_over(continuation)

    def answer_batch(self, items: Sequence[tuple[str, str]], *, max_length: int) -> AnswerBatch:
        """(stored dialogue, answer) pairs as the model reads them, right-padded: the answer
        whole, the oldest context dropped past ``max_length`` tokens."""
        tokenizer, special = self.tokenizer, self.add_special_tokens
        rows, starts = [], []
        for context, answer in items:
            prompt = self.prompt(context)
            prompt_ids = tokenizer(prompt, add_special_tokens=special)["input_ids"]
            full = tokenizer(prompt + self.completion(context, answer), add_special_tokens=special)["input_ids"]
            begin = _common_prefix(prompt_ids, full)
            cut = max(0, len(full) - max_length)
            rows.append(full[cut:])
            starts.append(max(begin - cut, 1))
        import torch  # here only: the database commands import this module and start faster without torch

        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return AnswerBatch(ids, mask, tuple(starts), tuple(len(row) for row in rows))

    @staticmethod
    def messages(context: str) -> list[dict[str, str]]:
        """The prompt as chat messages (TRL's conversational format)."""
        parsed = parse_prompt(context)
        if parsed is None:  # not a rendered dialogue: the whole text is the question
            return chat_messages((), clean(context))
        history, question = parsed
        return chat_messages(history, question)


def stop_token_ids(tokenizer: Any, generation_config: Any = None) -> set[int]:
    """Token ids that end an answer: the tokenizer's end of text, the model's configured
    end tokens (an instruct model lists its end-of-turn token there), and the end-of-turn
    tokens of the common chat templates when the vocabulary has them."""
    ids: set[int] = set()
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(int(tokenizer.eos_token_id))
    configured = getattr(generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif isinstance(configured, (list, tuple)):
        ids.update(int(i) for i in configured)
    vocabulary = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    for token in END_OF_TURN_TOKENS:
        if token in vocabulary:
            ids.add(int(vocabulary[token]))
    return ids


# ChatML (Qwen, SmolLM), Llama 3, Gemma, Phi-3.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")
