"""The read-only web dashboard: server-rendered HTML with inline SVG charts, no scripts,
nothing fetched from elsewhere (it works offline and behind any reverse proxy).

Pages (served by bot.web, under the bot's own listener or `thumbtune dashboard`):

- ``/``: approval per version with 95 % Wilson intervals (a chart and a table), the
  head-to-head ratings, the training runs with their status and reasons, each implicit
  signal kind's agreement with votes and its weight now (bot.agreement), votes per day,
  and recent feedback (texts and emoji; never who);
- ``/versions/N``: what version N learned (trainer.changes): its answers beside its
  parent's, the words that moved, the data behind it (the implicit signals' weights as
  its run used them), the gate's metrics and decision.

Texts blanked by retention or deleted by `forget me` are not shown: recent feedback
reads only kept texts, and the people's prompts quoted in a version's report are shown
only while a stored prompt still says them.
"""

from __future__ import annotations

import asyncio
import html
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bot import agreement
from bot.changes import HIDDEN, ShownChanges, for_people, quoted_questions, summary
from bot.stats import StatsReport, build_report
from storage.records import ChangesRecord, DamagedRecord, Gate, Words, WordShift
from storage.registry import BASE_VERSION, ModelRegistry, RegistryError, VersionInfo
from storage.repository import RecentVote, Repository, TrainingRun
from trainer.dataset import Agreement

log = logging.getLogger(__name__)

RECENT_VOTES = 20
RUNS_SHOWN = 20

STYLE = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#1a202c;background:#f7fafc}
header{background:#2b6cb0;color:#fff;padding:.8em 1.5em}header a{color:#fff;text-decoration:none}
header h1{font-size:1.3em;margin:0;display:inline}header span{margin-left:1.5em;opacity:.9}
main{max-width:1100px;margin:0 auto;padding:1em 1.5em}
section{background:#fff;border:1px solid #e2e8f0;border-radius:6px;padding:.6em 1.2em 1em;margin:1em 0}
h2{font-size:1.1em;margin:.4em 0 .6em}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.25em .6em;border-bottom:1px solid #edf2f7;vertical-align:top}
th{font-weight:600;color:#4a5568}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}td:first-child{white-space:nowrap}
.published{color:#276749}.rejected,.failed{color:#c53030}.skipped{color:#718096}.running{color:#b7791f}
.changed{background:#fffbea}.muted{color:#718096}.words li{display:inline;margin-right:1em}
svg text{font:12px system-ui,sans-serif;fill:#4a5568}
form{max-width:22em}input{font:inherit;padding:.3em;width:100%;margin:.3em 0}
header form{display:inline;float:right}header input{width:auto;margin:0;padding:.1em .6em}
"""


@dataclass(frozen=True)
class IndexData:
    report: StatsReport
    versions: dict[int, VersionInfo]  # from the registry
    current: int
    runs: list[TrainingRun]
    recent: list[RecentVote]
    implicit: list[Agreement]  # each implicit kind's agreement with votes and weight, database-wide


async def index_data(repository: Repository, registry: ModelRegistry) -> IndexData:
    report = await build_report(repository)
    versions, current = await asyncio.to_thread(_registry_view, registry)
    return IndexData(
        report=report,
        versions=versions,
        current=current,
        runs=await repository.training_runs(limit=RUNS_SHOWN),
        recent=await repository.recent_votes(limit=RECENT_VOTES),
        implicit=await agreement.current(repository),
    )


def _registry_view(registry: ModelRegistry) -> tuple[dict[int, VersionInfo], int]:
    return {info.version: info for info in registry.versions()}, registry.current_version()


# --- pages ----------------------------------------------------------------------------
def index_page(
    data: IndexData, *, serving: int | None, sign_out: bool = False, redact: Callable[[str], str] = str
) -> str:
    report = data.report
    parts = [
        _section("Approval per version", _approval_chart(report) + _versions_table(data), "approval"),
        _section("Head to head", _head_to_head(report), "head-to-head"),
        _section("Training runs", _runs_table(data.runs), "runs"),
        _section("Implicit signals", _implicit_now(data.implicit), "implicit-signals"),
        _section("Votes per day", _days_chart(report), "votes-per-day"),
        _section("Recent feedback", _recent(data.recent, redact), "recent"),
    ]
    shown = serving if serving is not None else data.current
    return _page("thumbtune", "".join(parts), serving=shown, sign_out=sign_out)


async def version_page(
    repository: Repository,
    registry: ModelRegistry,
    version: int,
    *,
    serving: int | None,
    sign_out: bool = False,
    redact: Callable[[str], str] = str,
) -> tuple[int, str]:
    """(HTTP status, page) for ``/versions/N``."""

    def page(title: str, body: str) -> str:
        return _page(title, body, serving=serving, root="../", sign_out=sign_out)

    if version == BASE_VERSION:
        return 200, page("version 0", _section("Version 0", "<p>The base model: it has no changes to show.</p>"))
    try:
        info = await asyncio.to_thread(registry.get, version)
    except RegistryError:
        # Not the error's text: it names the registry's folder or bucket.
        return 404, page("not found", _section("Not found", f"<p>There is no version {version}.</p>"))
    head = _version_head(info)
    try:
        record = await asyncio.to_thread(registry.changes, version)
    except DamagedRecord as exc:
        log.warning("dashboard: %s", exc)
        body = head + "<p class=rejected>Its record of what changed is damaged and is not shown (see the log).</p>"
        return 200, page(f"version {version}", _section(f"Version {version}", body))
    if record is None:
        body = head + "<p class=muted>No record of what changed (trained before it was kept).</p>"
        return 200, page(f"version {version}", _section(f"Version {version}", body))
    kept = await repository.kept_prompts(quoted_questions(record), redact=redact)
    changes = for_people(record, kept, redact)
    sections = [
        _section(f"Version {version}", head + _summary(record), "summary"),
        _section("Gate", _gate(record.gate), "gate"),
        _section("Words that moved", _words(record.words), "words"),
        _section("Training data", _data(changes), "data"),
        _section("Answers before and after", _answers(changes), "answers"),
    ]
    return 200, page(f"version {version}", "".join(sections))


def login_page(*, failed: bool = False) -> str:
    note = "<p class=rejected>That token is not right.</p>" if failed else ""
    form = (
        f"{note}<p>This dashboard needs its token (<code>THUMBTUNE_DASHBOARD_TOKEN</code>).</p>"
        "<form method=post action=login><label>Token <input type=password name=token autofocus required></label>"
        "<input type=submit value='Sign in'></form>"
    )
    return _page("sign in", _section("Sign in", form))


# --- parts ----------------------------------------------------------------------------
def _page(title: str, body: str, *, serving: int | None = None, root: str = "./", sign_out: bool = False) -> str:
    serving_note = f"<span>serving version {serving}</span>" if serving is not None else ""
    if sign_out:
        serving_note += f"<form method=post action='{root}logout'><input type=submit value='Sign out'></form>"
    # Links are relative (no leading slash), so the pages work under a reverse proxy's prefix.
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{_e(title)} · thumbtune</title><style>{STYLE}</style></head><body>"
        f"<header><h1><a href='{root}'>thumbtune</a></h1>{serving_note}</header><main>{body}</main></body></html>"
    )


def _section(title: str, body: str, anchor: str = "") -> str:
    ident = f" id={anchor}" if anchor else ""
    return f"<section{ident}><h2>{_e(title)}</h2>{body}</section>"


def _approval_chart(report: StatsReport) -> str:
    rated = [(v.version, interval) for v in report.versions if (interval := v.interval()) is not None]
    if not rated:
        return "<p class=muted>No votes yet.</p>"
    width, height, left, right, top, bottom = 720, 260, 48, 16, 12, 36
    versions = [version for version, _ in rated]
    low_v, high_v = min(versions), max(versions)
    span = max(1, high_v - low_v)

    def x(version: int) -> float:
        if low_v == high_v:
            return left + (width - left - right) / 2
        return left + (version - low_v) / span * (width - left - right)

    def y(value: float) -> float:
        return top + (1 - value) * (height - top - bottom)

    items = [
        f"<svg id=approval-chart role=img viewBox='0 0 {width} {height}' width='100%'"
        f" aria-label='approval per version with 95% intervals'>"
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        items.append(
            f"<line x1={left} x2={width - right} y1={y(tick):.1f} y2={y(tick):.1f} stroke='#edf2f7'/>"
            f"<text x={left - 6} y={y(tick) + 4:.1f} text-anchor=end>{tick:.0%}</text>"
        )
    path = " ".join(f"{'M' if i == 0 else 'L'}{x(v):.1f},{y(a):.1f}" for i, (v, (a, _, _)) in enumerate(rated))
    items.append(f"<path d='{path}' fill=none stroke='#90cdf4' stroke-width='2'/>")
    for version, (approval, low, high) in rated:
        cx = x(version)
        items.append(
            f"<a href='versions/{version}'><g class=point data-version={version}>"
            f"<title>version {version}: {approval:.1%} (95% interval {low:.1%}–{high:.1%})</title>"
            f"<line x1={cx:.1f} x2={cx:.1f} y1={y(low):.1f} y2={y(high):.1f} stroke='#2b6cb0' stroke-width='2'/>"
            f"<line x1={cx - 5:.1f} x2={cx + 5:.1f} y1={y(low):.1f} y2={y(low):.1f} stroke='#2b6cb0'/>"
            f"<line x1={cx - 5:.1f} x2={cx + 5:.1f} y1={y(high):.1f} y2={y(high):.1f} stroke='#2b6cb0'/>"
            f"<circle cx={cx:.1f} cy={y(approval):.1f} r=5 fill='#2b6cb0'/>"
            f"<text x={cx:.1f} y={height - bottom + 16} text-anchor=middle>v{version}</text></g></a>"
        )
    items.append(
        f"<text x={(width + left) / 2:.0f} y={height - 4} text-anchor=middle>"
        "model version (bars: 95% Wilson interval)</text></svg>"
    )
    return "".join(items)


def _versions_table(data: IndexData) -> str:
    stats = {v.version: v for v in data.report.versions}
    numbers = sorted(set(stats) | set(data.versions) | {BASE_VERSION})
    rows = []
    for version in numbers:
        v, info = stats.get(version), data.versions.get(version)
        status = "base" if version == BASE_VERSION else (info.status if info is not None else "gone")
        if version == data.current:
            status += " · current"
        interval = v.interval() if v is not None else None
        approval = "–" if interval is None else f"{interval[0]:.1%} ({interval[1]:.1%}–{interval[2]:.1%})"
        live = _time(v.live_at) if v is not None and v.live_at else "–"
        link = f"<a href='versions/{version}'>{version}</a>" if info is not None else str(version)
        rows.append(
            f"<tr><td>{link}</td><td>{_e(status)}</td><td>{live}</td>"
            f"<td class=n>{v.answers if v else 0}</td><td class=n>{v.up if v else 0}</td>"
            f"<td class=n>{v.down if v else 0}</td><td class=n>{approval}</td></tr>"
        )
    return (
        "<table id=versions><tr><th>version</th><th>status</th><th>live since</th><th class=n>answers</th>"
        "<th class=n>👍</th><th class=n>👎</th><th class=n>approval (95% interval)</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _head_to_head(report: StatsReport) -> str:
    result = report.head_to_head
    if result is None or not result.pairs:
        return "<p class=muted>No comparisons between two versions yet (1️⃣/2️⃣ votes).</p>"
    rows = []
    reference = result.versions[0].version
    for v in result.versions:
        rating = "–" if v.rating is None else f"{v.rating:+.0f}"
        if v.version == reference:
            interval = "reference"
        else:
            interval = "–" if v.rating_low is None else f"{v.rating_low:+.0f} – {v.rating_high:+.0f}"
        rows.append(
            f"<tr><td>{v.version}</td><td class=n>{rating}</td><td class=n>{interval}</td>"
            f"<td class=n>{v.comparisons}</td><td class=n>{v.wins:g}</td></tr>"
        )
    return (
        f"<p>{result.comparisons} comparison(s) between versions; {_e(result.method)}; ratings in Elo points.</p>"
        "<table><tr><th>version</th><th class=n>rating</th><th class=n>95% interval</th>"
        "<th class=n>games</th><th class=n>wins</th></tr>" + "".join(rows) + "</table>"
    )


def _runs_table(runs: Sequence[TrainingRun]) -> str:
    if not runs:
        return "<p class=muted>No training runs yet.</p>"
    rows = []
    for run in runs:
        made = f"<a href='versions/{run.new_version}'>{run.new_version}</a>" if run.new_version is not None else "–"
        took = f"{run.finished_at - run.started_at:.0f} s" if run.finished_at else "–"
        rows.append(
            f"<tr><td>{run.run_id}</td><td>{_time(run.started_at)}</td><td class='{_e(run.status)}'>{_e(run.status)}"
            f"</td><td class=n>{run.parent_version if run.parent_version is not None else '–'}</td>"
            f"<td class=n>{made}</td><td class=n>{run.examples if run.examples is not None else '–'}</td>"
            f"<td class=n>{took}</td><td>{_e(run.reason or '')}</td></tr>"
        )
    return (
        "<table id=runs><tr><th>run</th><th>started</th><th>status</th><th class=n>parent</th>"
        "<th class=n>version</th><th class=n>examples</th><th class=n>took</th><th>reason</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _implicit_now(items: Sequence[Agreement]) -> str:
    return (
        "<p>How often each kind of implicit signal (a thanks or a complaint, a retry, a rephrase) agreed "
        "with people's votes on the answers that have both, and the weight the next training run gives it.</p>"
        + _implicit_table(items)
    )


def _implicit_table(items: Iterable[agreement.Calibration]) -> str:
    rows = [
        f"<tr><td>{_e(row.kind)}</td><td class=n>{row.answers}</td><td class=n>{_e(row.agreed)}</td>"
        f"<td class=n>{_e(row.weight)}</td><td class=muted>{_e(row.note)}</td></tr>"
        for row in agreement.rows(items)
    ]
    return (
        "<table id=implicit><tr><th>implicit signal</th><th class=n>answers with votes</th><th class=n>agreed</th>"
        "<th class=n>weight</th><th></th></tr>" + "".join(rows) + "</table>"
    )


def _days_chart(report: StatsReport) -> str:
    days = report.days
    if not days:
        return "<p class=muted>No votes in the last 30 days.</p>"
    width, height, bottom = 720, 140, 20
    most = max(day.votes for day in days)
    slot = width / max(len(days), 14)  # one day is a bar, not the whole width
    bars = []
    for i, day in enumerate(days):
        up_h = (height - bottom) * day.up / most
        down_h = (height - bottom) * day.down / most
        x = i * slot + slot * 0.15
        w = slot * 0.7
        base = height - bottom
        bars.append(
            f"<g><title>{day.day}: {day.votes} votes ({day.up} 👍, {day.down} 👎)</title>"
            f"<rect x={x:.1f} y={base - up_h:.1f} width={w:.1f} height={up_h:.1f} fill='#68d391'/>"
            f"<rect x={x:.1f} y={base - up_h - down_h:.1f} width={w:.1f} height={down_h:.1f} fill='#fc8181'/></g>"
        )
    labels = f"<text x='0' y='{height - 4}'>{days[0].day}</text>"
    if len(days) > 1:
        labels += f"<text x='{len(days) * slot:.0f}' y='{height - 4}' text-anchor='end'>{days[-1].day}</text>"
    return (
        f"<svg id=days-chart role=img viewBox='0 0 {width} {height}' width='100%' aria-label='votes per day'>"
        + "".join(bars)
        + labels
        + f"</svg><p class=muted>up to {most} votes a day; green 👍, red 👎</p>"
    )


def _recent(votes: Sequence[RecentVote], redact: Callable[[str], str]) -> str:
    if not votes:
        return "<p class=muted>No feedback yet.</p>"
    rows = [
        f"<tr><td>{_time(v.created_at)}</td><td>{_e(v.emoji)}</td><td class=n>{v.model_version}</td>"
        f"<td>{_e(_short(redact(v.prompt_text)))}</td><td>{_e(_short(redact(v.answer_text)))}</td></tr>"
        for v in votes
    ]
    return (
        "<table id=recent><tr><th>when</th><th>emoji</th><th class=n>version</th><th>prompt</th><th>answer</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _version_head(info: VersionInfo) -> str:
    reasons = "; ".join(info.reasons)
    decision = "passed the gate" if info.status == "published" else f"rejected: {reasons}"
    return (
        f"<p>From version {info.parent}, made {_time(info.created_at)}: "
        f"<span class='{_e(info.status)}'>{_e(decision)}</span>.</p>"
    )


def _summary(changes: ChangesRecord) -> str:
    return "".join(f"<p>{_e(line)}</p>" for line in summary(changes).splitlines())


def _gate(gate: Gate) -> str:
    metrics = gate.metrics
    rows = [
        _gate_row(metrics, "perplexity on reference text", "perplexity", "parent_perplexity", "base_perplexity"),
        _gate_row(metrics, "  ratio to the parent's", "perplexity_ratio", None, None),
        _gate_row(metrics, "  ratio to version 0's", "base_perplexity_ratio", None, None),
        _gate_row(metrics, "held-out preference accuracy", "preference_accuracy", "parent_preference_accuracy", None),
        _gate_row(metrics, "  difference from the parent", "preference_difference", None, None),
        _gate_row(metrics, "distinct-2 of samples", "distinct_2", "parent_distinct_2", None),
        _gate_row(metrics, "chrF against corrections", "chrf", "parent_chrf", None),
        _gate_row(metrics, "  difference from the parent", "chrf_difference", None, None),
    ]
    if metrics.get("preference_pairs"):
        rows.append(
            f"<tr><td>held-out liked x disliked pairs</td><td class=n>{_num(metrics['preference_pairs'])}</td></tr>"
        )
    verdict = (
        "<p class=published>Passed the gate.</p>"
        if gate.passed
        else "<p class=rejected>Rejected: " + _e("; ".join(gate.reasons)) + "</p>"
    )
    notes = metrics.get("not_enough_data")
    missing = "".join(f"<li>not enough data: {_e(str(note))}</li>" for note in notes) if isinstance(notes, list) else ""
    return (
        verdict
        + (f"<ul class=muted>{missing}</ul>" if missing else "")
        + "<table id=gate><tr><th>metric (95% interval)</th><th class=n>this version</th><th class=n>parent</th>"
        "<th class=n>version 0</th></tr>" + "".join(row for row in rows if row) + "</table>"
    )


def _gate_row(metrics: dict[str, Any], label: str, mine: str, parent: str | None, base: str | None) -> str:
    """One metric's row: the value (or, for a ratio or difference, only its interval)."""
    value, interval = metrics.get(mine), metrics.get(f"{mine}_interval")
    if value is None and interval is None:
        return ""
    shown = _num(value) if value is not None else ""
    if isinstance(interval, list) and len(interval) == 2:
        shown += f" ({_num(interval[0])} – {_num(interval[1])})"
    cells = [shown, _num(metrics.get(parent)) if parent else "", _num(metrics.get(base)) if base else ""]
    indent = " style='padding-left:1.5em'" if label.startswith("  ") else ""
    return f"<tr><td{indent}>{_e(label.strip())}</td>" + "".join(f"<td class=n>{cell}</td>" for cell in cells) + "</tr>"


def _words(words: Words) -> str:
    def listed(items: Iterable[WordShift]) -> str:
        return "".join(f"<li><code>{_e(item.token)}</code> {item.change:+.2f}</li>" for item in items) or "–"

    return (
        "<p>Mean change of log-probability per token on the reference text.</p>"
        f"<p>More likely now:</p><ul class=words>{listed(words.rose)}</ul>"
        f"<p>Less likely now:</p><ul class=words>{listed(words.fell)}</ul>"
    )


def _data(changes: ShownChanges) -> str:
    counts = changes.record.data.counts
    lines = [
        f"<p>{_n(counts.get('train_examples', 0))} training examples ({_n(counts.get('desirable', 0))} liked, "
        f"{_n(counts.get('undesirable', 0))} disliked), {_n(counts.get('held_out_examples', 0))} held out.</p>"
    ]
    for title, examples in (("Most liked", changes.most_liked), ("Most disliked", changes.most_disliked)):
        if not examples:
            continue
        items = [
            f"<li class=muted>{HIDDEN}</li>"
            if example.hidden
            else f"<li>{_e(example.question)} → {_e(example.answer)}</li>"
            for example in examples
        ]
        lines.append(f"<p>{title}:</p><ul>{''.join(items)}</ul>")
    weights = changes.record.data.implicit_weights
    if weights:
        lines.append("<p>Implicit signals, as this run weighed them:</p>" + _implicit_table(weights))
    else:
        lines.append(f"<p class=muted>Implicit signals: {_e(agreement.missing(weights))}.</p>")
    return "".join(lines)


def _answers(changes: ShownChanges) -> str:
    rows = []
    for answer in changes.answers:
        if answer.hidden:
            cells = f"<td class=muted colspan=3>{HIDDEN}</td>"
        else:
            cells = f"<td>{_e(answer.question)}</td><td>{_e(answer.before)}</td><td>{_e(answer.after)}</td>"
        rows.append(f"<tr{' class=changed' if answer.changed else ''}>{cells}</tr>")
    share = changes.record.changed_share
    return (
        f"<p>{share:.0%} of the fixed prompts are answered differently (highlighted); same seeds on both sides.</p>"
        "<table id=answers><tr><th>prompt</th><th>parent</th><th>this version</th></tr>" + "".join(rows) + "</table>"
    )


def _n(value: Any) -> str:
    """A count from a file, shown as a number or not at all."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else "–"


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _time(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(at)) + " UTC" if at else "–"


def _num(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"
