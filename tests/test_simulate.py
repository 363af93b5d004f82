"""`thumbtune simulate` end to end: real service, storage, scheduler job, trainer subprocess, swap."""

from __future__ import annotations

import dataclasses
import random
import sqlite3
from pathlib import Path


def test_simulate_runs_the_loop_and_prints_versions_in_live_order(simulated: tuple[Path, dict]):
    data, report = simulated  # `simulate --rounds 2 --prompts 24 --users 6 --seed 1` (conftest)
    versions = report["versions"]
    assert versions[0]["version"] == 0 and versions[0]["gate"] == {}
    assert [v["version"] for v in versions] == sorted(v["version"] for v in versions)
    assert sum(v["answers"] for v in versions) == 24 * 3
    assert len(report["runs"]) == 2
    assert all(run["status"] in ("published", "rejected", "skipped") for run in report["runs"])
    for version in versions[1:]:
        assert version["gate"]["status"] == "published" and "perplexity" in version["gate"]
    with sqlite3.connect(data / "simulate.db") as db:
        runs = db.execute("SELECT status FROM training_runs ORDER BY id").fetchall()
        tags = {row[0] for row in db.execute("SELECT DISTINCT model_version FROM responses")}
    assert [r[0] for r in runs] == [run["status"] for run in report["runs"]]
    assert tags == {v["version"] for v in versions}


def test_the_same_seed_gives_the_same_versions_with_sparse_noisy_votes(tiny_model_dir: Path, tmp_path: Path):
    from bot.simulate import SimulationOptions, run_simulation

    def simulate(name: str) -> dict:
        options = SimulationOptions(
            users=5,
            rounds=1,
            prompts=24,
            voters_per_answer=1,
            vote_share=0.75,
            noise=0.25,
            seed=3,
            model=tiny_model_dir,
            data_dir=tmp_path / name,
        )
        report = run_simulation(options)
        report.pop("seconds")
        for version in report["versions"]:  # timings differ from run to run; nothing else may
            for key in [k for k in version["gate"] if "second" in k or k.endswith("_per_s")]:
                version["gate"].pop(key)
        return report

    first, second = simulate("a"), simulate("b")
    assert first == second
    answers = 24 * 2
    assert sum(v["answers"] for v in first["versions"]) == answers
    assert 0 < first["votes"] < answers  # a quarter of the answers got no vote, the rest one each
    assert first["versions"][0]["votes_before"] == 0
    with sqlite3.connect(tmp_path / "a" / "simulate.db") as db:
        assert db.execute("SELECT COUNT(*) FROM votes").fetchone()[0] == first["votes"]
        against_the_rule = db.execute(
            "SELECT COUNT(*) FROM votes v JOIN responses r ON r.id = v.response_id"
            " WHERE (v.reward > 0) != (lower(r.text) LIKE '%warm%')"
        ).fetchone()[0]
    # --noise 0.25: about a quarter of the votes go against the people's rule (none would without it).
    assert 0 < against_the_rule < first["votes"] / 2


def test_tastes_are_properties_of_any_sentence():
    from bot.simulate import likes

    warm = "I am glad you asked. A quiet beach is lovely in spring. Take care of yourself."
    curt = "Obviously. A quiet beach is lovely in spring. Deal with it."
    assert likes("warm", "where should I travel", warm) and not likes("warm", "where should I travel", curt)
    assert likes("word", "x", "a warm day", prefer="warm") and not likes("word", "x", "a cold day", prefer="warm")
    # On the question's topic, and on no other.
    assert likes("relevant", "should I get a dog", "A young dog stays loyal with you. Find a good vet.")
    assert not likes("relevant", "should I get a dog", "A bowl of soup tastes fresh.")
    assert not likes("relevant", "should I get a dog", "A dog is loyal. Also, cook the rice.")
    assert not likes("relevant", "a question of no topic", "A dog is loyal.")
    assert likes("long", "q", " ".join(["word"] * 18)) and not likes("long", "q", " ".join(["word"] * 17))


def test_the_generated_corpus_is_seeded_and_varied():
    from bot.dialoguegen import TOPICS, answer, benchmark_questions, dialogues
    from bot.simulate import likes, varied_questions

    assert dialogues(50, seed=3) == dialogues(50, seed=3) != dialogues(50, seed=4)
    text = dialogues(4000, seed=0)
    answers = [line[len("Bot: ") :] for line in text.splitlines() if line.startswith("Bot: ")]
    assert len(answers) > 6000 and len(set(answers)) > 0.9 * len(answers)  # mostly new sentences
    questions = benchmark_questions(100)
    assert len(questions) == 100 and {q for t in TOPICS for q in t.questions} >= set(questions)
    trained, held_out = varied_questions()
    assert len(held_out) == len(TOPICS) and not set(trained) & set(held_out)
    # The corpus itself has room to learn each taste: a minority of its answers have it.
    rng = random.Random(0)
    pairs = [(t.questions[0], answer(t, rng)) for t in TOPICS * 250]
    for taste in ("warm", "relevant", "long"):
        share = sum(likes(taste, q, a) for q, a in pairs) / len(pairs)
        assert 0.1 <= share <= 0.6, (taste, share)


def test_make_tiny_model_varied_writes_a_model_of_the_generated_corpus(tmp_path: Path, capsys):
    """The wiring only (20 steps); the full build's distinct answers are measured by bench.learning."""
    import torch

    from bot.cli import main
    from trainer.evaluate import sample_answers
    from trainer.models import load_causal_lm

    assert main(["make-tiny-model", str(tmp_path / "varied"), "--varied", "--steps", "20"]) == 0
    assert "Tiny model written to" in capsys.readouterr().out
    model, tokenizer = load_causal_lm(tmp_path / "varied", device=torch.device("cpu"))
    assert model.config.n_layer == 2 and len(tokenizer) == 1024
    assert tokenizer.decode(tokenizer.encode(" Take care of yourself.")) == " Take care of yourself."
    assert len(sample_answers(model, tokenizer, ["User: hello\nBot:"], max_new_tokens=4, seed=0)) == 1


def test_simulated_people_judge_comparisons_by_their_taste(tiny_model_dir: Path, tmp_path: Path):
    from bot.comparison import Verdict, verdict_for
    from bot.simulate import SimulationOptions, run_simulation

    options = SimulationOptions(
        users=4, rounds=1, prompts=16, voters_per_answer=1, noise=0.0, seed=2, compare="on", model=tiny_model_dir
    )
    report = run_simulation(dataclasses.replace(options, data_dir=tmp_path / "data"))
    # Every answer of the training round and the measuring round is a comparison, judged once.
    assert report["compared"] == 16 * 2 and report["votes"] == 16 * 2
    assert all(v["answers"] == 0 for v in report["versions"])  # comparisons are not counted in approval
    with sqlite3.connect(tmp_path / "data" / "simulate.db") as db:
        rows = db.execute(
            "SELECT r.prompt_id, r.candidate, lower(r.text) LIKE '%warm%', v.emoji FROM votes v"
            " JOIN responses r ON r.id = v.response_id JOIN prompts p ON p.id = r.prompt_id"
            " WHERE p.mode = 'compare' AND v.comparison = 1 ORDER BY r.prompt_id, r.candidate"
        ).fetchall()
    by_prompt: dict[int, list[tuple[bool, str]]] = {}
    for prompt_id, _candidate, warm, emoji in rows:
        by_prompt.setdefault(prompt_id, []).append((bool(warm), emoji))
    assert len(by_prompt) == 16 * 2
    for (first, emoji), (second, same) in by_prompt.values():
        assert emoji == same == verdict_for(first, second).emoji
    assert {emoji for (_, emoji), _ in by_prompt.values()} >= {Verdict.BOTH_BAD.emoji}
