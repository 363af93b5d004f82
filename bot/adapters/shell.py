"""A local chat on stdin/stdout: the same service and storage as the platforms (platform `shell`).

Works with a terminal or a pipe; ends cleanly at end of input. The shell keeps no
reactions of its own, so there is nothing to catch up on after a restart.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
import threading
import uuid
from pathlib import Path
from typing import ClassVar, TextIO

from bot.adapters.base import Adapter, ChatPrefix
from bot.catchup import ShownReactions
from bot.comparison import BOTH_BAD_EMOJI, FIRST_EMOJI, SECOND_EMOJI, TIE_EMOJI
from bot.events import IncomingCorrection, IncomingPrompt, IncomingReaction, message_key
from bot.feedback import ALIASES
from bot.service import BotService, VoteOutcome
from bot.settings import Settings
from storage.repository import PendingPrompt

PLATFORM = "shell"

HELP = """\
Type a message and press Enter to get an answer.
Rate the last answer:  +  or  👍   (good)      -  or  👎   (bad)      🚩  (flag: never train on it)
  compare: TEXT        get two answers side by side (THUMBTUNE_COMPARE=true: always); then
                       1  or  1️⃣  (first is better)   2  or  2️⃣   =  or  🤝  (tie)   -  or  👎  (both bad)
  /rate EMOJI          rate it with any emoji from the table (e.g. /rate 👎)
  /unrate EMOJI        take a rating back
  better: TEXT         say what a better answer would have been
  /new                 start a new conversation (forget the context)
  /help                this help
  /quit                leave (so does end of input, Ctrl-D)"""

# `+` and `-`, like Slack's `+1` and `-1`, always rate: 👍 and 👎, as the one alias table says.
_SHORT_RATINGS = {short: ALIASES[name] for name in ("+1", "-1") for short in (name[0], name)}
_SHORT_VERDICTS = {"1": FIRST_EMOJI, "2": SECOND_EMOJI, "=": TIE_EMOJI, "-": BOTH_BAD_EMOJI}


class ShellChat(Adapter):
    """The chat on stdin/stdout; the person at it is the operator (an admin, no rate limit)."""

    platform: ClassVar[str] = PLATFORM

    def __init__(
        self,
        service: BotService,
        *,
        stdin: TextIO = sys.stdin,
        stdout: TextIO = sys.stdout,
        user: str | None = None,
        correction_prefix: str = "better:",
        log_path: Path | None = None,
    ) -> None:
        self.service = service
        self.log_path = log_path  # where the log goes meanwhile, said once at the start
        self.stdin = stdin
        self.stdout = stdout
        self.user = user or _local_user()
        self.correction = ChatPrefix(correction_prefix)
        self.interactive = stdin.isatty()
        self.conversation = f"{PLATFORM}:{uuid.uuid4().hex}"
        self.last_answer: str | None = None  # message key of the last rateable answer
        self.last_was_comparison = False
        self._hinted = False
        self._stopping = False
        self._lines: asyncio.Queue[str | None] | None = None  # lines read from stdin, None: stop

    @classmethod
    def from_settings(cls, service: BotService, settings: Settings) -> ShellChat:
        return cls(service, correction_prefix=settings.correction_prefix, log_path=settings.shell_log_path)

    def say(self, text: str) -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def connected(self) -> bool | None:
        return not self._stopping  # the terminal is there while the chat runs

    async def announce(self, text: str) -> None:
        """The loop tells the person at the shell when a new model version goes live."""
        self.say(f"(bot) {text}")

    async def reactions_on(self, message_key: str) -> ShownReactions | None:
        return None  # the shell shows no reactions: what it stored is all there is

    async def answer_pending(self, pending: PendingPrompt, *, late: bool = False) -> None:
        """The shell answers before it reads the next line (its answer is its acknowledgement), so
        it leaves no prompt pending; one found (written by another program) is answered here."""
        reply = await self.service.answer_pending(pending, late=late)
        self.say(f"bot: {reply.text}")
        await self.service.pending_answered(pending)

    async def stop(self) -> None:
        """Leave after the line being handled (SIGTERM, SIGINT); the line being read is not awaited."""
        self._stopping = True
        if self._lines is not None:
            self._lines.put_nowait(None)

    async def serve(self) -> None:
        """Chat until end of input, /quit or :meth:`stop`."""
        self.say(f"thumbtune shell chat (model version {self.service.serving_version}). /help for commands.")
        if self.log_path is not None and self.log_path.is_file():
            self.say(f"(the log goes to {self.log_path})")
        self._lines = asyncio.Queue()
        self._start_reading(self._lines)
        while not self._stopping:
            if self.interactive:
                self.stdout.write("you> ")
                self.stdout.flush()
            line = await self._lines.get()
            if not line:  # end of input, or stopped
                break
            if not await self.handle(line.strip()):
                break

    def _start_reading(self, lines: asyncio.Queue[str | None]) -> None:
        """Read stdin in a daemon thread: a blocking read can be neither interrupted nor waited
        for at exit, so a stop never waits for the person to press Enter."""
        loop = asyncio.get_running_loop()

        def read() -> None:
            while True:
                line = self.stdin.readline()
                try:
                    loop.call_soon_threadsafe(lines.put_nowait, line)
                except RuntimeError:  # the bot has stopped: nobody reads any more
                    return
                if not line:
                    return

        threading.Thread(target=read, name="thumbtune: shell input", daemon=True).start()

    async def handle(self, line: str) -> bool:
        """Handle one input line; False means leave."""
        if not line:
            return True
        command, _, argument = line.partition(" ")
        if (emoji := self._rating_in(line)) is not None:
            await self.rate(emoji)
        elif command == "/rate":
            await self.rate(argument.strip())
        elif command == "/unrate":
            await self.rate(argument.strip(), remove=True)
        elif command == "/help":
            self.say(HELP)
        elif command in ("/quit", "/exit"):
            return False
        elif command == "/new":
            self.conversation = f"{PLATFORM}:{uuid.uuid4().hex}"
            self.last_answer = None
            self.say("(new conversation)")
        elif (better := self.correction.rest(line)) is not None:
            await self.correct(better)
        elif command.startswith("/"):
            self.say(f"Unknown command {command}. /help lists the commands.")
        else:
            await self.ask(line)
        return True

    def _rating_in(self, line: str) -> str | None:
        """The emoji a line that is only a rating means (a shorthand, a verdict after a
        comparison, or an emoji of the table); None for anything else."""
        if self.last_was_comparison and line in _SHORT_VERDICTS:
            return _SHORT_VERDICTS[line]
        if line in _SHORT_RATINGS or self.service.is_reaction_emoji(line):
            return _SHORT_RATINGS.get(line, line)
        return None

    async def ask(self, text: str) -> None:
        reply = await self.service.on_prompt(
            IncomingPrompt(
                platform=PLATFORM, channel="local", user=self.user, text=text, conversation=self.conversation
            )
        )
        if reply is None:
            return
        if not reply.ok:
            self.say(f"bot: {reply.text}")
            if reply.attachment is not None:
                self.say(f"(chart saved to {reply.attachment})")
            return
        key = message_key(PLATFORM, str(reply.response_ids[0]))
        await self.service.answer_posted(reply.response_ids[0], key)
        self.last_answer = key
        self.last_was_comparison = reply.compare
        if reply.compare:
            # No versions shown: the rater should not know which side is the new model.
            self.say(f"bot:\n{reply.text}")
            self.say("(rate with 1, 2, = for a tie, or - if both are bad)")
            return
        self.say(f"bot [v{reply.model_version}]: {reply.text}")
        if not self._hinted:
            self.say("(rate it with + or -, /help for more)")
            self._hinted = True

    async def rate(self, emoji: str, *, remove: bool = False) -> None:
        if not emoji:
            self.say("Which emoji? For example: /rate 👍")
            return
        if self.last_answer is None:
            self.say("There is no answer to rate yet.")
            return
        reaction = IncomingReaction(platform=PLATFORM, message_key=self.last_answer, user=self.user, emoji=emoji)
        if remove:
            outcome = await self.service.on_reaction_removed(reaction)
        else:
            outcome = await self.service.on_reaction(reaction)
        messages = {
            VoteOutcome.RECORDED: f"(recorded {emoji})",
            VoteOutcome.ALREADY_RECORDED: f"(you already rated it {emoji})",
            VoteOutcome.RETRACTED: f"(took back {emoji})",
            VoteOutcome.NOTHING_TO_RETRACT: f"(you had not rated it {emoji})",
            VoteOutcome.UNKNOWN_EMOJI: (
                f"({emoji} is not a rating here; use 1, 2, = or -)"
                if self.last_was_comparison
                else f"({emoji} is not a rating; use + or -)"
            ),
            VoteOutcome.FLAGGED: "(flagged: this answer will never be used for training)",
            VoteOutcome.CAPPED: "(you have reached today's vote limit; thank you!)",
        }
        self.say(messages.get(outcome, f"({outcome.value})"))

    async def correct(self, text: str) -> None:
        if self.last_answer is None:
            self.say("There is no answer to correct yet.")
            return
        stored = await self.service.on_correction(
            IncomingCorrection(platform=PLATFORM, message_key=self.last_answer, user=self.user, text=text)
        )
        self.say("(thanks, noted your better answer)" if stored else "(write the better answer after the prefix)")


def _local_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment
        return "local"


ADAPTER = ShellChat
