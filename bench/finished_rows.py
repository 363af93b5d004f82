"""`python -m bench.finished_rows [--quick]`: what leaving finished answers out of a batch saves.

Real answers end at different lengths (at the next turn marker); a batch used to keep
computing every row until the longest answer was done. GPT-2 small shape, fp32, 1 thread:
16 rows whose answers end after 8, 10, ..., 38 tokens (a ``done`` rule, as the bot's
turn-end rule would), timed against the same rows all decoded to the longest length,
which is what a batch cost before rows could leave it. Tokens/s counts useful tokens only.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import emit, quick_args, write_gpt2_small_shape
from bot.generation import decode, load_model
from storage.dialogue import render_prompt


def main() -> None:
    args = quick_args(__doc__, "8 rows (< 1 min)")
    rows = 8 if args.quick else 16
    lengths = [8 + 2 * i for i in range(rows)]
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_model(write_gpt2_small_shape(Path(tmp) / "m"), version=0, device="cpu")
        prompts = [render_prompt(f"question number {i}") for i in range(rows)]
        batch = loaded.tokenizer(prompts, return_tensors="pt", padding=True)
        greedy = lambda logits: logits.argmax(dim=-1)  # noqa: E731

        def run(done: Callable[[int, list[int]], bool] | None) -> tuple[float, list[list[int]]]:
            started = time.perf_counter()
            new = decode(
                loaded.model,
                batch["input_ids"],
                batch["attention_mask"],
                max_new_tokens=max(lengths),
                choose=greedy,
                stop_ids=(),
                done=done,
            )
            return time.perf_counter() - started, new

        run(lambda row, ids: len(ids) >= 2)  # warm-up
        leaving, new = run(lambda row, ids: len(ids) >= lengths[row])
        assert [len(ids) for ids in new] == lengths
        useful = sum(lengths)
        staying, _ = run(None)
    emit(
        {
            "rows": rows,
            "answer_lengths": lengths,
            "useful_tokens": useful,
            "rows_leave_s": round(leaving, 2),
            "rows_stay_s": round(staying, 2),
            "useful_tokens_per_s_rows_leave": round(useful / leaving, 1),
            "useful_tokens_per_s_rows_stay": round(useful / staying, 1),
            "speedup": round(staying / leaving, 2),
        }
    )


if __name__ == "__main__":
    main()
