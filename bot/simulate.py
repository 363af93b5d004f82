"""`thumbtune simulate`: the whole loop with simulated people, offline.

Simulated people ask questions through the real service (generator, storage), rate the
answers with 👍 when they contain a preferred word and 👎 otherwise, and after each round
the real scheduler job fires: vote gate, trainer subprocess (TRL), eval gate, registry,
hot swap. A last round of questions measures the version that went live last. The result
is one JSON object: the versions in the order they went live, each with its approval
(the share of its answers the people's rule likes, voted on or not) and the votes cast
before it went live.

What people like is a *taste* (``--taste``): ``word`` (the default: the answer contains
``--prefer WORD``), or a property of any sentence, which a model can only learn by
generalising: ``warm`` (a warm tone, and nothing curt), ``relevant`` (about the question's
topic and no other; questions of bot.dialoguegen's topics) or ``long`` (at least
``LONG_WORDS`` words). Questions in ``held_out_questions`` are asked only in the last
round, so the approval of the last version on them is on questions no run trained on.

Feedback can be sparse and noisy as real feedback is: only ``vote_share`` of the answers
get votes, from ``voters_per_answer`` people, and ``noise`` of the votes are the opposite
of the person's rule. Prompts are asked one at a time, so the same seed gives the same
batches, the same samples and the same versions on one machine.

People can also do what people do anyway (bot.implicit): reply to ``reply_share`` of the
answers with a thanks or a complaint that follows their taste (``reply_noise`` of them the
other way), and ask again (a retry) after ``retry_share`` of the answers they dislike, or in
other words (a rephrase) after ``rephrase_share`` of them. The
result then says how often each kind of stored signal agreed with the people's true taste.
With ``compare`` on or auto, some answers are comparisons (bot.comparison): the people who
would vote on an answer give one their verdict (a mistaken person reads both sides the
other way); comparisons are counted apart (``compared``), not in approval.
With ``implicit`` off they do just the same (the same draws from the seed), and the bot
reads nothing beyond their reactions: the same people, with and without implicit feedback.

Everything lives in a fresh data folder (a temporary one by default), never in the
bot's own database.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict, get_args

from bot.comparison import verdict_for
from bot.events import IncomingPrompt, IncomingReaction, IncomingReply, message_key
from bot.settings import CompareMode, Settings, TrainHistory, default_of
from storage.registry import BASE_VERSION

if TYPE_CHECKING:
    from collections.abc import Callable

    from bot.app import Runtime
    from bot.dialoguegen import Topic
    from storage.repository import SignalRow

log = logging.getLogger(__name__)

PLATFORM = "simulate"
QUESTIONS = (
    "hello",
    "what is the weather like",
    "will it rain tomorrow",
    "what should I eat",
    "do you like pizza",
    "what music do you like",
    "I have too much work",
    "how can I focus",
    "do you like cats",
    "should I get a dog",
    "where should I travel",
    "what should I pack",
    "can you help me",
    "I need some advice",
    "what should I do today",
    "tell me something nice",
)


Taste = Literal["word", "warm", "relevant", "long"]
TASTES: tuple[str, ...] = get_args(Taste)
LONG_WORDS = 18
VARIED_MAX_NEW_TOKENS = 40  # the varied model's answers need about 40 tokens


def likes(taste: str, question: str, answer: str, *, prefer: str = "warm") -> bool:
    """Whether a simulated person with ``taste`` likes ``answer`` to ``question``."""
    from bot.dialoguegen import CURT_MARKERS, TOPICS, WARM_MARKERS, topic_of

    text = answer.lower()
    if taste == "word":
        return prefer.lower() in text
    if taste == "warm":
        return any(m in text for m in WARM_MARKERS) and not any(m in text for m in CURT_MARKERS)
    if taste == "long":
        return len(answer.split()) >= LONG_WORDS
    if taste == "relevant":
        topic = topic_of(question)
        words = set(text.replace(".", " ").replace(",", " ").replace("!", " ").split())

        def mentions(t: Topic) -> bool:
            return any(k in words or k + "s" in words for k in t.keywords)

        return topic is not None and mentions(topic) and not any(mentions(t) for t in TOPICS if t is not topic)
    raise ValueError(f"unknown taste {taste!r}: one of {', '.join(TASTES)}")


def rephrased(question: str) -> str:
    """A simulated person's question in other words: its content words and two more (the
    detector reads it as a rephrase when the question has two content words or more)."""
    return f"I mean: {question}, honestly?"


def share(text: str) -> float:
    """A share between 0 and 1, from the command line."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a share between 0 and 1")
    return value


@dataclass(frozen=True)
class SimulationOptions:
    """A simulation: who asks, what they like, how they vote. ``thumbtune simulate`` has one
    ``--option`` per field with help (trainer.config.add_arguments); the others are set in code."""

    users: int = field(default=20, metadata={"help": "Simulated people."})
    rounds: int = field(default=3, metadata={"help": "Training rounds."})
    prompts: int = field(default=96, metadata={"help": "Prompts per round."})
    prefer: str = field(
        default="warm", metadata={"help": "With --taste word: people 👍 answers containing this word, 👎 the rest."}
    )
    taste: Taste = field(
        default="word",
        metadata={
            "help": (
                "What people like: word (the --prefer word), warm (a warm tone, nothing curt), relevant "
                f"(on the question's topic and no other), long ({LONG_WORDS} words or more)."
            )
        },
    )
    varied: bool = field(
        default=False,
        metadata={
            "help": (
                "The varied test model (make-tiny-model --varied; unless --model) and its topics' questions, "
                "one per topic held out."
            )
        },
    )
    model: Path | None = field(default=None, metadata={"help": "Base model folder (default: a fresh tiny model)."})
    seed: int = field(default=0, metadata={"help": "The same seed prints the same versions."})
    vote_share: float = field(default=1.0, metadata={"help": "Share of answers that get any vote.", "type": share})
    noise: float = field(
        default=0.0,
        metadata={"help": "Share of votes that go against the person's rule.", "type": share},
    )
    voters_per_answer: int = field(default=2, metadata={"help": "People who vote on an answer that gets votes."})
    reply_share: float = field(
        default=0.0,
        metadata={
            "help": "Share of answers the asker replies to: thanks if they like it, a complaint if not.",
            "type": share,
        },
    )
    reply_noise: float = field(
        default=0.15, metadata={"help": "Share of replies that go against the person's taste.", "type": share}
    )
    retry_share: float = field(
        default=0.0, metadata={"help": "Share of disliked answers whose asker asks the same again.", "type": share}
    )
    rephrase_share: float = field(
        default=0.0,
        metadata={
            "help": "Share of disliked answers whose asker asks again in other words ('I mean: …, honestly?').",
            "type": share,
        },
    )
    compare: CompareMode = field(
        default="off",
        metadata={
            "help": "THUMBTUNE_COMPARE: on or auto shows comparisons; the people who vote on an answer give "
            "a comparison their verdict instead.",
            "choices": get_args(CompareMode),
        },
    )
    compare_share: float = field(
        default=default_of("compare_share"),
        metadata={"help": "THUMBTUNE_COMPARE_SHARE with --compare auto.", "type": share},
    )
    implicit: bool = field(
        default=True,
        metadata={
            "help": (
                "THUMBTUNE_IMPLICIT of the simulated bot. Off: people reply and ask again just the same, "
                "and the bot reads nothing beyond their reactions."
            )
        },
    )
    history: TrainHistory = field(
        default=default_of("train_history"), metadata={"help": "THUMBTUNE_TRAIN_HISTORY for the runs."}
    )
    best_of: int | None = field(
        default=None, metadata={"help": "THUMBTUNE_BEST_OF for the answers (default: the bot's)."}
    )
    data_dir: Path | None = field(
        default=None, metadata={"help": "Keep the simulation's database and registry here (default: temporary)."}
    )
    learning_rate: float | None = field(
        default=None, metadata={"help": "KTO learning rate (default: the bot's, THUMBTUNE_TRAIN_LEARNING_RATE)."}
    )
    epochs: float | None = field(
        default=None, metadata={"help": "Epochs per training run (default: the bot's, THUMBTUNE_TRAIN_EPOCHS)."}
    )
    train_seed: int | None = field(
        default=None, metadata={"help": "Seed of the training runs (default: the bot's, THUMBTUNE_TRAIN_SEED)."}
    )
    questions: tuple[str, ...] = field(
        default=QUESTIONS, metadata={"help": "The questions people ask.", "option": False}
    )
    held_out_questions: tuple[str, ...] = field(
        default=(), metadata={"help": "Questions asked in the last round only (never trained on).", "option": False}
    )
    max_new_tokens: int = field(
        default=24, metadata={"help": "THUMBTUNE_MAX_NEW_TOKENS of the simulated bot.", "option": False}
    )


def varied_questions() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(trained, held out): bot.dialoguegen's questions, the last of each topic held out."""
    from bot.dialoguegen import TOPICS

    return tuple(q for t in TOPICS for q in t.questions[:-1]), tuple(t.questions[-1] for t in TOPICS)


def for_varied_model(options: SimulationOptions) -> SimulationOptions:
    """``options`` asking the varied model's questions (:func:`varied_questions`), with room
    for its longer answers: what ``--varied`` means besides the model."""
    trained, held_out = varied_questions()
    return dataclasses.replace(
        options, questions=trained, held_out_questions=held_out, max_new_tokens=VARIED_MAX_NEW_TOKENS
    )


@dataclass
class _Tally:
    answers: int = 0
    liked: int = 0  # answers the people's rule likes, whether or not anyone voted
    votes: int = 0
    held_out_answers: int = 0  # answers to held-out questions (never trained on)
    held_out_liked: int = 0
    texts: list[str] | None = None  # the answers to trained questions

    @property
    def approval(self) -> float | None:
        return round(self.liked / self.answers, 4) if self.answers else None

    @property
    def held_out_approval(self) -> float | None:
        return round(self.held_out_liked / self.held_out_answers, 4) if self.held_out_answers else None


@dataclass(frozen=True)
class _Plan:
    """One prompt and what people will do with its answer, drawn in order from the seed."""

    user: str
    question: str
    voters: tuple[int, ...]
    flipped: tuple[bool, ...]  # per voter: votes against the rule (noise)
    held_out: bool = False  # a held-out question (asked in the last round only)
    reply: bool | None = None  # the asker replies: True as if they liked it, False as if not; None: no reply
    retry: bool = False  # the asker asks again if they dislike the answer
    rephrase: bool = False  # the asker asks again in other words if they dislike the answer


class RunReport(TypedDict):
    """A training run after a round: how it ended and the version it made."""

    round: int
    status: str
    version: int | None
    reason: str | None
    votes_before: int  # votes cast before the run (all it could train on)


class VersionReport(TypedDict):
    """A version that went live, measured on the answers it gave."""

    version: int
    approval: float | None  # share of its answers the people's rule likes (None: it gave none)
    held_out_approval: float | None  # the same on held-out questions (None: none asked)
    distinct_answers: int
    top_answer_share: float | None
    answers: int
    votes: int
    votes_before: int  # votes cast before it went live
    gate: dict[str, Any]  # the registry's status and parent, and the gate's metrics (empty for version 0)


class SignalAgreement(TypedDict):
    """One kind of implicit signal: how many were stored, and the share that agreed with the
    asker's true taste."""

    signals: int
    agreement: float


class SimulationResult(TypedDict):
    """What ``thumbtune simulate`` prints: the versions in the order they went live."""

    versions: list[VersionReport]
    runs: list[RunReport]
    signals: dict[str, SignalAgreement]  # by kind of implicit signal
    prefer: str
    taste: str
    votes: int
    compared: int  # answers shown as comparisons (their verdicts are in votes)
    seconds: float


class _Simulation:
    """Simulated people using a running bot: what they ask, how they react, what they saw."""

    def __init__(self, options: SimulationOptions, runtime: Runtime) -> None:
        self.options = options
        self.runtime = runtime
        self.rng = random.Random(options.seed)
        self.prefer = options.prefer.lower()
        self.tallies: dict[int, _Tally] = {}
        self.live_order = [runtime.generator.version]
        self.votes_before = {runtime.generator.version: 0}  # version -> votes cast before it went live
        self.runs: list[RunReport] = []
        self.truth: dict[int, bool] = {}  # response id -> whether its asker's taste likes it
        self.cast = 0  # votes cast (reactions: 👍 / 👎 and comparison verdicts)
        self.compared = 0  # answers shown as comparisons

    def plan(self, *, held_out: bool = False) -> _Plan:
        options, rng = self.options, self.rng
        pool = options.held_out_questions if held_out else options.questions
        user, question = f"person{rng.randrange(options.users)}", rng.choice(pool)
        voters: tuple[int, ...] = ()
        if rng.random() < options.vote_share:
            voters = tuple(rng.sample(range(options.users), k=min(options.voters_per_answer, options.users)))
        flipped = tuple(rng.random() < options.noise for _ in voters)
        if not (options.reply_share or options.retry_share or options.rephrase_share):  # no replies: draws as before
            return _Plan(user, question, voters, flipped, held_out)
        replies = rng.random() < options.reply_share
        reply_flipped = rng.random() < options.reply_noise
        retry = rng.random() < options.retry_share
        rephrase = (
            options.rephrase_share > 0 and rng.random() < options.rephrase_share
        )  # no draw at 0: seeds keep their runs
        return _Plan(
            user, question, voters, flipped, held_out, None if not replies else not reply_flipped, retry, rephrase
        )

    async def ask_round(self, round_index: int) -> None:
        """A round of prompts, drawn in order and asked one at a time: the seed decides the
        batches and samples too. The last round also asks the held-out questions."""
        options = self.options
        plans = [self.plan() for _ in range(options.prompts)]
        if round_index == options.rounds and options.held_out_questions:
            plans += [self.plan(held_out=True) for _ in range(options.prompts)]
        for index, planned in enumerate(plans):
            await self.ask(round_index, index, planned)

    async def ask(self, round_index: int, index: int, planned: _Plan) -> None:
        service = self.runtime.service
        reply = await service.on_prompt(
            IncomingPrompt(
                platform=PLATFORM,
                channel="sim",
                user=planned.user,
                text=planned.question,
                event_id=f"r{round_index}-p{index}",
            )
        )
        if reply is None or not reply.ok or reply.model_version is None:
            return
        key = message_key(PLATFORM, "sim", str(reply.response_ids[0]))
        await service.answer_posted(reply.response_ids[0], key)
        if reply.compare:
            await self.judge(key, reply.response_ids, planned)
            return
        tally = self.tallies.setdefault(reply.model_version, _Tally(texts=[]))
        liked = likes(self.options.taste, planned.question, reply.text, prefer=self.prefer)
        if planned.held_out:
            tally.held_out_answers += 1
            tally.held_out_liked += liked
            return  # nobody votes on them: no run trains on them
        tally.answers += 1
        tally.liked += liked
        assert tally.texts is not None
        tally.texts.append(reply.text)
        self.truth[reply.response_ids[0]] = liked
        await self.follow_up(planned, liked=liked)
        await self.vote(key, planned, liked=liked, tally=tally)

    async def judge(self, key: str, response_ids: tuple[int, ...], planned: _Plan) -> None:
        """A comparison: the people who vote on it give the verdict their taste says (a
        mistaken one reads both sides the other way); it is not counted in approval."""
        repository = self.runtime.repository
        shown = await repository.response_by_message(key)
        stored = await repository.stored_candidates(shown.prompt_id) if shown is not None else None
        if stored is None:
            return
        good = {
            c.response_id: likes(self.options.taste, planned.question, c.text, prefer=self.prefer) for c in stored[1]
        }
        first, second = (good[response_id] for response_id in response_ids[:2])
        self.compared += 1
        for voter, flipped in zip(planned.voters, planned.flipped, strict=True):
            verdict = verdict_for(first != flipped, second != flipped)
            await self.runtime.service.on_reaction(
                IncomingReaction(platform=PLATFORM, message_key=key, user=f"person{voter}", emoji=verdict.emoji)
            )
            self.cast += 1

    async def follow_up(self, planned: _Plan, *, liked: bool) -> None:
        """What the asker does besides voting: a reply, and asking again after a bad answer."""
        service = self.runtime.service
        if planned.reply is not None:  # True: their reply follows their taste
            said_liked = liked == planned.reply
            text = "thanks, that helps!" if said_liked else "that's wrong, not what I asked"
            await service.on_reply(
                IncomingReply(platform=PLATFORM, channel="sim", conversation=None, user=planned.user, text=text)
            )
        again = planned.question if planned.retry else rephrased(planned.question) if planned.rephrase else None
        if again is not None and not liked:
            await service.on_prompt(IncomingPrompt(platform=PLATFORM, channel="sim", user=planned.user, text=again))

    async def vote(self, key: str, planned: _Plan, *, liked: bool, tally: _Tally) -> None:
        for voter, flipped in zip(planned.voters, planned.flipped, strict=True):
            thumbs_up = liked != flipped
            await self.runtime.service.on_reaction(
                IncomingReaction(
                    platform=PLATFORM, message_key=key, user=f"person{voter}", emoji="👍" if thumbs_up else "👎"
                )
            )
            tally.votes += 1
            self.cast += 1

    async def train(self, round_index: int) -> bool:
        """Fire the scheduler's training job now and wait for the run; note a new live version
        (True: one went live)."""
        runtime, loop = self.runtime, self.runtime.loop
        finished = loop.runs_finished
        loop.scheduler.get_job("train").modify(next_run_time=datetime.now(timezone.utc))
        await loop.wait_for_run(after=finished)
        last = (await runtime.repository.training_runs(limit=1))[0]
        self.runs.append(
            {
                "round": round_index + 1,
                "status": last.status,
                "version": last.new_version,
                "reason": last.reason,
                "votes_before": self.cast,
            }
        )
        log.info("round %d: training %s", round_index + 1, last.status)
        if runtime.generator.version == self.live_order[-1]:
            return False
        self.live_order.append(runtime.generator.version)
        self.votes_before[runtime.generator.version] = self.cast
        return True

    def versions(self) -> list[VersionReport]:
        return [self.version_report(version) for version in self.live_order]

    def version_report(self, version: int) -> VersionReport:
        tally = self.tallies.get(version, _Tally())
        gate: dict[str, Any] = {}
        if version != BASE_VERSION:
            info = self.runtime.loop.registry.get(version)
            gate = {"status": info.status, "parent": info.parent, **dict(info.metrics)}
        texts = tally.texts or []
        top = Counter(" ".join(t.lower().split()) for t in texts).most_common(1)
        return {
            "version": version,
            "approval": tally.approval,
            "held_out_approval": tally.held_out_approval,
            "distinct_answers": len(set(texts)),
            "top_answer_share": round(top[0][1] / len(texts), 4) if top else None,
            "answers": tally.answers,
            "votes": tally.votes,
            "votes_before": self.votes_before[version],
            "gate": gate,
        }


async def simulate(
    options: SimulationOptions, settings: Settings, *, stop: Callable[[int], bool] | None = None
) -> SimulationResult:
    """Run the loop; ``settings`` must point at a data folder of the simulation's own.

    ``stop``, when given, is called (in a worker thread, while nobody asks anything) with each
    version that goes live; True ends the loop there, with no last round. It must leave the
    process's random state as it found it, or the rounds after it would change.
    """
    import torch

    from bot.app import open_runtime

    torch.manual_seed(options.seed)
    started = time.monotonic()
    async with open_runtime(settings) as runtime:
        simulation = _Simulation(options, runtime)
        for round_index in range(options.rounds + 1):
            await simulation.ask_round(round_index)
            if round_index == options.rounds:
                break  # the last round only measures the version now live
            went_live = await simulation.train(round_index)
            if went_live and stop is not None and await asyncio.to_thread(stop, runtime.generator.version):
                break
        versions = simulation.versions()
        signals = _signal_agreement(await runtime.repository.all_signals(), simulation.truth)
    return {
        "versions": versions,
        "runs": simulation.runs,
        "signals": signals,
        "prefer": options.prefer,
        "taste": options.taste,
        "votes": simulation.cast,
        "compared": simulation.compared,
        "seconds": round(time.monotonic() - started, 1),
    }


def _signal_agreement(signals: list[SignalRow], truth: dict[int, bool]) -> dict[str, SignalAgreement]:
    """Per kind of implicit signal: how many were stored, and the share that agreed with the
    asker's true taste (a positive one on an answer they like, a negative one on one they do not)."""
    counts: dict[str, list[int]] = {}
    for signal in signals:
        liked = truth.get(signal.response_id)
        if liked is None:
            continue
        tally = counts.setdefault(signal.kind, [0, 0])
        tally[0] += 1
        tally[1] += (signal.value > 0) == liked
    return {kind: {"signals": n, "agreement": round(agreed / n, 4)} for kind, (n, agreed) in counts.items()}


def simulation_settings(options: SimulationOptions, data_dir: Path, model: Path) -> Settings:
    from bot.settings import load_settings

    training: dict[str, float | int] = {}
    if options.learning_rate is not None:
        training["train_learning_rate"] = options.learning_rate
    if options.epochs is not None:
        training["train_epochs"] = options.epochs
    if options.train_seed is not None:
        training["train_seed"] = options.train_seed
    return load_settings(
        **training,
        model=str(model),
        data_dir=data_dir,
        db=data_dir / "simulate.db",
        registry_dir=str(data_dir / "models"),
        adapter="shell",
        prompts_per_minute=0,  # simulated people may ask as fast as they like
        daily_vote_cap=0,
        train_every_minutes=24 * 60,  # fired by hand after each round, through the scheduler
        train_cron=None,
        train_min_new_votes=1,
        train_history=options.history,
        implicit=options.implicit,
        registry_poll_s=0,
        max_new_tokens=options.max_new_tokens,
        queue_size=max(64, options.prompts),  # a round's prompts all arrive at once
        candidates=1,
        compare=options.compare,
        compare_share=options.compare_share,
        **({"best_of": options.best_of} if options.best_of is not None else {}),
        retention_days=0,
        allowed_channels=[],
        dashboard_port=0,  # a simulation needs no listener
        keep_versions=max(default_of("keep_versions"), options.rounds),  # it reports every version
    )


def run_simulation(options: SimulationOptions, *, stop: Callable[[int], bool] | None = None) -> SimulationResult:
    """:func:`simulate` in a data folder of its own (``options.data_dir`` or a temporary one)."""
    with tempfile.TemporaryDirectory(prefix="thumbtune-simulate-") as tmp:
        data_dir = options.data_dir or Path(tmp) / "data"
        model = options.model
        if model is None:
            from bot.tinymodel import VARIED, TinyModelSpec, make_tiny_model

            model = make_tiny_model(Path(tmp) / "tiny-model", VARIED if options.varied else TinyModelSpec())
        settings = simulation_settings(options, Path(data_dir), Path(model))
        return asyncio.run(simulate(options, settings, stop=stop))


def format_result(result: SimulationResult) -> str:
    return json.dumps(result, ensure_ascii=False, sort_keys=False)
