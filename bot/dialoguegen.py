"""A generated, seeded corpus of varied dialogues for the varied test model.

The shipped tiny model learns a few dozen canned answers (``bot/data/dialogues.txt``), so
learning on it is re-weighting known sentences. The varied model (`thumbtune
make-tiny-model DIR --varied`) learns from this corpus instead: thousands of dialogues
whose answers combine, per topic, a subject, what it does, a quality and some advice,
each in one of three tones (warm, curt, plain), and sometimes drift to another topic, so
that most sampled answers are new sentences and the properties people may like (a warm
tone, staying on the question, length) vary from answer to answer.

Pure functions of a seed: the same seed gives the same corpus and the same questions.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from storage.dialogue import BOT, USER


@dataclass(frozen=True)
class Topic:
    name: str
    questions: tuple[str, ...]
    keywords: tuple[str, ...]  # words that mark an answer as being about this topic
    subjects: tuple[str, ...]
    predicates: tuple[str, ...]  # with {q}: a quality
    qualities: tuple[str, ...]
    advice: tuple[str, ...]


TOPICS: tuple[Topic, ...] = (
    Topic(
        "weather",
        (
            "what is the weather like",
            "will it rain tomorrow",
            "is it cold outside",
            "how is the sky today",
            "should I take an umbrella",
            "will the weekend be sunny",
        ),
        ("sky", "rain", "sun", "wind", "cloud", "umbrella", "weather", "coat"),
        ("the sky", "the wind", "the morning", "the sun", "the rain", "the afternoon", "the air", "the clouds"),
        ("looks {q}", "feels {q}", "will stay {q}", "should turn {q} later", "is {q} for now"),
        ("clear", "grey", "mild", "bright", "cool", "calm", "damp", "warm", "windy", "soft"),
        (
            "take a light coat",
            "bring an umbrella",
            "go for a walk before noon",
            "open the windows",
            "stay in with a book",
            "wear good shoes",
            "check the sky again at lunch",
        ),
    ),
    Topic(
        "food",
        (
            "what should I eat",
            "what should I cook tonight",
            "do you like pizza",
            "what is a good breakfast",
            "can you suggest a dinner",
            "what goes well with rice",
        ),
        ("eat", "cook", "soup", "rice", "pasta", "bread", "pizza", "dinner", "breakfast", "salad"),
        (
            "a bowl of soup",
            "fresh bread",
            "pasta with garlic",
            "rice with beans",
            "a green salad",
            "a pizza with tomatoes",
            "baked potatoes",
            "an omelette",
        ),
        ("is {q} and easy", "tastes {q}", "makes a {q} dinner", "is always {q}", "can be {q} and cheap"),
        ("simple", "hearty", "fresh", "warm", "light", "tasty", "filling", "spicy", "homely"),
        (
            "cook it with olive oil",
            "add some lemon",
            "eat it slowly",
            "share it with a friend",
            "make a little extra for tomorrow",
            "try it with herbs",
            "buy the vegetables fresh",
        ),
    ),
    Topic(
        "pets",
        (
            "do you like cats",
            "should I get a dog",
            "what is a good pet",
            "my cat is sleeping",
            "how do I train a puppy",
            "is a rabbit a good pet",
        ),
        ("cat", "dog", "pet", "puppy", "rabbit", "kitten", "animal"),
        ("a cat", "a dog", "a puppy", "a rabbit", "an old cat", "a young dog", "a kitten", "a calm pet"),
        ("is {q} company", "can be {q} at home", "stays {q} with you", "needs a {q} routine", "makes a home {q}"),
        ("quiet", "loyal", "playful", "gentle", "curious", "happy", "warm", "patient", "lively"),
        (
            "give it a walk every day",
            "keep a regular feeding time",
            "let it sleep",
            "play with it after work",
            "find a good vet",
            "give it a soft bed",
            "reward it with small treats",
        ),
    ),
    Topic(
        "music",
        (
            "what music do you like",
            "can you recommend a song",
            "do you play guitar",
            "who is a good singer",
            "what should I listen to",
            "how do I learn piano",
        ),
        ("music", "song", "guitar", "piano", "singer", "jazz", "listen", "melody"),
        (
            "calm piano music",
            "an old jazz record",
            "a folk song",
            "a guitar melody",
            "a good singer",
            "a slow ballad",
            "a cheerful band",
            "the radio",
        ),
        ("sounds {q}", "is {q} in the evening", "feels {q} on a long day", "makes a {q} mood", "stays {q} and clear"),
        ("calm", "bright", "gentle", "lively", "warm", "sweet", "soft", "rich", "cheerful"),
        (
            "practise ten minutes a day",
            "listen with headphones",
            "try an old album",
            "learn one chord at a time",
            "play it while you cook",
            "go to a small concert",
            "make a playlist for the morning",
        ),
    ),
    Topic(
        "work",
        (
            "I have too much work",
            "how can I focus",
            "I am tired of my job",
            "how do I finish my project",
            "my boss is angry",
            "how can I work faster",
        ),
        ("work", "task", "focus", "job", "project", "boss", "list", "break"),
        (
            "a short list",
            "one small task",
            "a quiet desk",
            "a clear plan",
            "a break",
            "the hardest task",
            "a timer",
            "your project",
        ),
        ("keeps things {q}", "makes the day {q}", "is {q} to start with", "helps you stay {q}", "feels {q} once done"),
        ("clear", "calm", "simple", "lighter", "steady", "easier", "focused", "manageable", "quiet"),
        (
            "start with the easiest thing",
            "take a short break every hour",
            "write down the next step",
            "turn off your phone",
            "ask for help early",
            "finish one thing before lunch",
            "say no to one meeting",
        ),
    ),
    Topic(
        "travel",
        (
            "where should I travel",
            "what should I pack",
            "I want to visit the sea",
            "is the mountain trip worth it",
            "how do I plan a holiday",
            "where is a good place for a weekend",
        ),
        ("travel", "trip", "sea", "beach", "mountain", "pack", "city", "holiday", "train"),
        (
            "a small city by the sea",
            "the mountains",
            "a quiet beach",
            "an old town",
            "a night train",
            "a lake in the hills",
            "a island village",
            "a city with old streets",
        ),
        ("is {q} in spring", "feels {q} and new", "stays {q} all year", "makes a {q} trip", "is {q} for a weekend"),
        ("lovely", "quiet", "sunny", "warm", "fresh", "peaceful", "bright", "cheap", "green"),
        (
            "pack light",
            "book the train early",
            "bring a good map",
            "take comfortable shoes",
            "try the local food",
            "keep a day free",
            "carry a small bag",
        ),
    ),
    Topic(
        "sleep",
        (
            "I cannot sleep",
            "how can I rest better",
            "I am so tired",
            "good night",
            "why do I wake up early",
            "should I take a nap",
        ),
        ("sleep", "rest", "bed", "night", "nap", "tired", "dream"),
        (
            "a dark room",
            "a short nap",
            "your bed",
            "the night",
            "a cup of tea",
            "a slow evening",
            "a good pillow",
            "an early night",
        ),
        ("feels {q}", "makes you {q}", "keeps the mind {q}", "is {q} after a long day", "helps you feel {q}"),
        ("calm", "rested", "quiet", "soft", "warm", "peaceful", "cosy", "heavy", "gentle"),
        (
            "put the phone away",
            "read a few pages",
            "keep the room cool",
            "go to bed at the same time",
            "drink less coffee",
            "breathe slowly",
            "write tomorrow's plan down",
        ),
    ),
    Topic(
        "friends",
        (
            "how do I make friends",
            "my friend is sad",
            "I feel lonely",
            "should I call my sister",
            "how do I say sorry",
            "what gift should I buy",
        ),
        ("friend", "call", "sister", "sorry", "gift", "family", "lonely", "talk"),
        (
            "an old friend",
            "your sister",
            "a kind word",
            "a short call",
            "a small gift",
            "a walk together",
            "a handwritten note",
            "a shared meal",
        ),
        ("means a lot when {q}", "feels {q}", "is always {q}", "makes people {q}", "can be {q} and simple"),
        ("kind", "honest", "warm", "sincere", "close", "happy", "thoughtful", "gentle", "welcome"),
        (
            "send a message today",
            "listen more than you talk",
            "invite them for tea",
            "say it plainly",
            "remember their birthday",
            "join a club",
            "ask how they really are",
        ),
    ),
)

TONES = ("warm", "curt", "plain")
WARM_OPENERS = (
    "Oh, good question!",
    "I am glad you asked.",
    "Happy to help, my friend.",
    "What a lovely thing to ask.",
    "Of course, dear.",
    "I hope this helps.",
)
WARM_CLOSERS = (
    "Take care of yourself.",
    "I hope your day is lovely.",
    "Enjoy it, my friend.",
    "You deserve a gentle day.",
    "Sending you a big smile.",
    "Be kind to yourself.",
)
CURT_OPENERS = ("Fine.", "Look.", "Obviously.", "Simple.", "Sure, whatever.", "Well, no.")
CURT_CLOSERS = ("That is all.", "Deal with it.", "Next question.", "Figure it out.", "Not my problem.", "Done.")
# What marks a tone in any sentence (bot.simulate's tastes read them).
WARM_MARKERS = ("glad", "lovely", "my friend", "dear", "hope", "take care", "enjoy", "gentle", "smile", "kind to")
CURT_MARKERS = ("whatever", "deal with it", "next question", "figure it out", "not my problem", "obviously", "well, no")


def topic_of(question: str) -> Topic | None:
    """The topic a question belongs to (by its exact text), if any."""
    for topic in TOPICS:
        if question in topic.questions:
            return topic
    return None


def answer(topic: Topic, rng: random.Random, *, tone: str | None = None, drift: float = 0.35) -> str:
    """One answer to a question of ``topic``: an optional tone opener, a sentence about a subject
    with a quality, sometimes advice, sometimes a drift to another topic, an optional closer."""
    tone = tone or rng.choice(TONES)
    parts: list[str] = []
    if tone == "warm" and rng.random() < 0.8:
        parts.append(rng.choice(WARM_OPENERS))
    elif tone == "curt" and rng.random() < 0.8:
        parts.append(rng.choice(CURT_OPENERS))
    about = rng.choice([t for t in TOPICS if t is not topic]) if rng.random() < drift else topic
    subject = rng.choice(about.subjects)
    core = f"{subject} {rng.choice(about.predicates).format(q=rng.choice(about.qualities))}."
    parts.append(core[0].upper() + core[1:])
    if rng.random() < 0.6:
        advice = rng.choice(about.advice)
        parts.append(rng.choice(("You could {a}.", "Maybe {a}.", "Try to {a}.", "Just {a}.")).format(a=advice))
    if rng.random() < 0.3:
        extra = rng.choice(rng.choice(TOPICS).advice)
        parts.append(f"Also, {extra}.")
    if tone == "warm" and rng.random() < 0.7:
        parts.append(rng.choice(WARM_CLOSERS))
    elif tone == "curt" and rng.random() < 0.7:
        parts.append(rng.choice(CURT_CLOSERS))
    return " ".join(parts)


def dialogues(count: int, *, seed: int = 0, questions: Sequence[str] | None = None) -> str:
    """``count`` dialogues of 1 to 3 turns, separated by blank lines, as ``User:``/``Bot:``
    lines; the questions come from ``questions`` (default: every topic's)."""
    rng = random.Random(seed)
    pool = list(questions) if questions is not None else [q for t in TOPICS for q in t.questions]
    out = []
    for _ in range(count):
        lines = []
        for _ in range(rng.choice((1, 1, 2, 3))):
            question = rng.choice(pool)
            topic = topic_of(question) or rng.choice(TOPICS)
            lines += [f"{USER} {question}", f"{BOT} {answer(topic, rng)}"]
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def benchmark_questions(count: int = 100, *, seed: int = 1) -> list[str]:
    """``count`` questions drawn evenly from the topics (a seeded order), for measuring how varied
    a model's answers are."""
    rng = random.Random(seed)
    every = [q for t in TOPICS for q in t.questions]
    return [every[i % len(every)] for i in rng.sample(range(len(every) * 3), count)] if count else []
