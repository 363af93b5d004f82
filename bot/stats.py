"""Is the bot getting better? Per-version approval with honest intervals, as a table, JSON or a chart."""

from __future__ import annotations

import asyncio
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bot.headtohead import HeadToHead, head_to_head
from storage.repository import Repository

Z_95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, *, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a proportion; (0, 1) when there are no trials."""
    if trials <= 0:
        return (0.0, 1.0)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class VersionStats:
    version: int
    answers: int
    voters: int
    up: int
    down: int
    approval: float | None
    approval_low: float | None
    approval_high: float | None
    live_at: float | None

    def interval(self) -> tuple[float, float, float] | None:
        """(approval, low, high) once the version has votes; None before."""
        if self.approval is None or self.approval_low is None or self.approval_high is None:
            return None
        return self.approval, self.approval_low, self.approval_high


@dataclass(frozen=True)
class DayStats:
    day: str
    votes: int
    up: int
    down: int


@dataclass(frozen=True)
class StatsReport:
    versions: list[VersionStats]  # 👍/👎 approval (comparison verdicts are not in it)
    days: list[DayStats]  # 👍/👎 votes per day
    head_to_head: HeadToHead | None = None  # from comparisons between two versions

    def as_dict(self) -> dict[str, Any]:
        return {
            "versions": [asdict(v) for v in self.versions],
            "votes_per_day": [asdict(d) for d in self.days],
            "head_to_head": asdict(self.head_to_head) if self.head_to_head is not None else None,
        }


async def build_report(repository: Repository, *, days: int = 30) -> StatsReport:
    live = await repository.model_versions_live_at()
    versions = []
    for row in await repository.approval_by_version():
        rated = row.up + row.down
        low, high = wilson_interval(row.up, rated) if rated else (None, None)
        versions.append(
            VersionStats(
                version=row.version,
                answers=row.answers,
                voters=row.voters,
                up=row.up,
                down=row.down,
                approval=row.approval,
                approval_low=low,
                approval_high=high,
                live_at=live.get(row.version),
            )
        )
    day_rows = await repository.votes_per_day(days=days)
    verdicts = [(v.first_version, v.second_version, v.emoji) for v in await repository.comparison_votes()]
    return StatsReport(
        versions=versions,
        days=[DayStats(*row) for row in day_rows],
        # The bootstrap refits hundreds of times: off the event loop (`stats` in a chat).
        head_to_head=await asyncio.to_thread(head_to_head, verdicts) if verdicts else None,
    )


def format_table(report: StatsReport) -> str:
    if not report.versions:
        return "No answers yet."
    lines = [f"{'version':>7}  {'answers':>7}  {'voters':>6}  {'👍':>5}  {'👎':>5}  approval (95% interval)"]
    for v in report.versions:
        interval = v.interval()
        approval = "-" if interval is None else f"{interval[0]:6.1%}  ({interval[1]:.1%} – {interval[2]:.1%})"
        lines.append(f"{v.version:>7}  {v.answers:>7}  {v.voters:>6}  {v.up:>5}  {v.down:>5}  {approval}")
    if report.days:
        lines.append("")
        lines.append("votes per day: " + ", ".join(f"{d.day} {d.votes}" for d in report.days[-7:]))
    if report.head_to_head is not None:
        lines.append("")
        lines.extend(format_head_to_head(report.head_to_head))
    return "\n".join(lines)


def format_head_to_head(result: HeadToHead) -> list[str]:
    lines = [
        f"head to head: {result.comparisons} comparison(s) between versions"
        f" ({result.same_version} within one version, not rated)"
    ]
    if not result.pairs:
        return lines
    lines.append(f"{'version':>7}  {'rating':>7}  95% interval      {'games':>5}  {'wins':>5}")
    for v in result.versions:
        rated = "-" if v.rating is None else f"{v.rating:+7.0f}"
        if v.version == result.versions[0].version:
            interval = "(reference)"
        else:
            interval = "-" if v.rating_low is None else f"({v.rating_low:+.0f} – {v.rating_high:+.0f})"
        lines.append(f"{v.version:>7}  {rated:>7}  {interval:<16}  {v.comparisons:>5}  {v.wins:>5g}")
    lines.append(f"{'a-b':>7}  {'a won':>7}  {'b won':>7}  {'🤝':>3}  {'👎':>3}  P(a preferred to b) (95% interval)")
    for p in result.pairs:
        chance = "-" if p.a_beats_b is None else f"{p.a_beats_b:6.1%}"
        if p.a_beats_b_low is not None:
            chance += f"  ({p.a_beats_b_low:.1%} – {p.a_beats_b_high:.1%})"
        lines.append(f"{f'{p.a}-{p.b}':>7}  {p.a_wins:>7}  {p.b_wins:>7}  {p.ties:>3}  {p.both_bad:>3}  {chance}")
    lines.append(f"({result.method}; ratings in Elo points, the lowest version = 0)")
    return lines


def plot(report: StatsReport, path: Path | str) -> Path:
    """Approval per version with its Wilson interval; a dashed line where each version went live."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    path = Path(path)
    rated = [(v, interval) for v in report.versions if (interval := v.interval()) is not None]
    figure, axis = plt.subplots(figsize=(7, 4), dpi=100)
    if rated:
        xs = [v.version for v, _ in rated]
        ys = [approval for _, (approval, _, _) in rated]
        below = [approval - low for _, (approval, low, _) in rated]
        above = [high - approval for _, (approval, _, high) in rated]
        axis.errorbar(xs, ys, yerr=[below, above], fmt="o-", capsize=4, color="#2b6cb0", label="approval (95% Wilson)")
        for v, (approval, _, _) in rated:
            axis.annotate(
                f"n={v.up + v.down}", (v.version, approval), textcoords="offset points", xytext=(6, 6), fontsize=8
            )
        for v, _ in rated[1:]:
            axis.axvline(v.version - 0.5, color="#a0aec0", linestyle="--", linewidth=1)
        axis.set_xticks(xs)
        axis.legend(loc="lower right")
    else:
        axis.text(0.5, 0.5, "no votes yet", ha="center", va="center", transform=axis.transAxes)
    axis.set_ylim(0, 1)
    axis.set_xlabel("model version (dashed: a retraining went live)")
    axis.set_ylabel("share of up-votes among up + down")
    axis.set_title("thumbtune: approval per model version")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    # The versions drawn go into the PNG's metadata too, for tools (and tests) reading it.
    drawn = ",".join(str(v.version) for v, _ in rated)
    figure.savefig(path, format="png", metadata={"Title": "thumbtune approval", "Description": f"versions={drawn}"})
    plt.close(figure)
    return path
