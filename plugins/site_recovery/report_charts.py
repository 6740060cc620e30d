"""Geometry of the drill report's two charts, and the report's duration and time formats.

:func:`timeline` lays out the phases of each VM's drill on one time axis from the drill start;
:func:`trend` lays out the verdict and the RTO per VM of a site's recent drills. Both are pure:
they take the typed report records and return small frozen dataclasses of coordinates and
labels (SVG user units, texts unescaped), which the templates in ``templates/drill_report/``
draw. Coordinates that are whole numbers stay ``int``; the templates print any ``float`` with one
decimal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from statistics import median

from site_recovery.records import DASH, DrillReport, format_seconds
from site_recovery.vocabulary import DrillOutcome, DrillPhase, DrillVerdict

#: How many drills the trend chart shows, this one included.
TREND_RUNS = 20
OK_MARK, BAD_MARK = "\u2713", "\u2717"

#: phase: (label, colour)
PHASES = {
    DrillPhase.TEST_FAILOVER: ("Test failover", "#2f6fd0"),
    DrillPhase.VERIFY: ("Verify", "#17917f"),
    DrillPhase.CLEANUP: ("Cleanup", "#d98a1c"),
}
#: one colour per VM when the trend draws a line per VM (more VMs: slowest and median instead)
VM_COLOURS = ("#2f6fd0", "#d98a1c", "#17917f", "#8e44ad", "#c0392b", "#5d6d7e", "#b7950b", "#1abc9c")
#: axis steps in seconds, the first one that gives at most the wanted number of ticks wins
TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
OPEN_COLOUR = "#8a94a6"
SLOWEST_COLOUR, MEDIAN_COLOUR, RANGE_COLOUR, TARGET_COLOUR = "#c0392b", "#2f6fd0", "#b8c2d0", "#5d6d7e"


# ------------------------------------------------------------------------------------ formats
def format_time(moment: datetime | None, with_date: bool = True) -> str:
    """``2026-11-28 01:00:00 UTC`` (or ``01:00:00``); a dash when unknown. Records hold UTC times."""
    if moment is None:
        return DASH
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC" if with_date else "%H:%M:%S")


def axis_label(seconds: float) -> str:
    """An axis tick: ``0``, ``45s``, ``5m``, ``1m30s``, ``1h30m``."""
    return "0" if round(seconds) == 0 else format_seconds(seconds, sep="")


def tick_step(span: float, max_ticks: int) -> float:
    """The smallest step of :data:`TICK_STEPS` that puts at most ``max_ticks`` steps on ``span`` seconds."""
    for step in TICK_STEPS:
        if span / step <= max_ticks:
            return step
    return math.ceil(span / max_ticks / 86400) * 86400


def shorten(text: str, length: int) -> str:
    """``text`` cut to ``length`` characters, an ellipsis marking the cut."""
    return text if len(text) <= length else text[: length - 1] + "\u2026"


# ------------------------------------------------------------------------------------ shapes
@dataclass(frozen=True)
class Label:
    """A text at (x, y); ``anchor`` is SVG's text-anchor."""

    x: float
    y: float
    text: str
    anchor: str = "middle"


@dataclass(frozen=True)
class Band:
    """A zebra stripe behind every other timeline row."""

    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Bar:
    """One phase of one VM: a rectangle with its tooltip; an open bar has no recorded end."""

    x: float
    y: float
    width: float
    height: float
    colour: str
    open_ended: bool
    title: str


@dataclass(frozen=True)
class TimelineRow:
    name: str
    label: Label
    font_size: int
    failed: bool
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class VerticalTick:
    """A vertical grid line from ``y1`` to ``y2`` with its label(s) (above, and below on tall charts)."""

    x: float
    y1: float
    y2: float
    labels: tuple[Label, ...]


@dataclass(frozen=True)
class TargetLine:
    """The RTO target as a dashed vertical line with a label."""

    x: float
    y1: float
    y2: float
    label: Label


@dataclass(frozen=True)
class Swatch:
    """A legend entry: a small sample at (x, y) and its text.

    ``kind``: ``box`` (a phase), ``open`` (a phase with no end), ``line`` (a series: line and dot),
    ``range`` (a vertical range bar) or ``target`` (the dashed target line).
    """

    kind: str
    x: float
    y: float
    colour: str
    text: Label

    @property
    def mid_x(self) -> float:
        return self.x + 11

    @property
    def end_x(self) -> float:
        return self.x + 22

    @property
    def range_y1(self) -> float:
        return self.y - 6

    @property
    def range_y2(self) -> float:
        return self.y + 6


@dataclass(frozen=True)
class Timeline:
    """The timeline chart. ``rows`` empty: no VM has phase timings, the chart is only ``empty``."""

    width: int
    height: int
    rows: tuple[TimelineRow, ...] = ()
    bands: tuple[Band, ...] = ()
    ticks: tuple[VerticalTick, ...] = ()
    axis_title: Label | None = None
    target: TargetLine | None = None
    #: the target is beyond the axis: said in words
    target_note: Label | None = None
    #: no VM has phase timings: the chart says so
    empty: Label | None = None
    legend: tuple[Swatch, ...] = ()
    #: how many VMs had no phase timing to draw
    hidden: Label | None = None


# ------------------------------------------------------------------------------------ timeline
def timeline(report: DrillReport) -> Timeline:
    """
    Lay out each VM's phases (test failover, verify, cleanup) on one time axis from the drill start.

    The axis runs from the report's start (else the first phase) to the last moment known (a
    phase's end, the report's end); it stretches to show the RTO target when that is at most
    twice as far. A phase without an end is drawn open up to the last moment known; a phase
    without a start is left out, and so is a VM without any phase. Rows, in the report's order,
    shrink from 24 to 16 to 12 units as VMs are added (over 30 VMs the axis is labelled below too).

    :param report: The report: its VMs' phases, its start and end, its RTO target.
    """
    vms = report.vms
    rows = [(vm, spans) for vm in vms if (spans := [s for s in vm.timeline if s.start is not None])]
    starts = [s.start for _, spans in rows for s in spans]
    t0 = report.started_at or (min(starts) if starts else None)
    width, label_w, right = 1240, 210, 24
    if not rows or t0 is None:
        return Timeline(width=width, height=40, empty=Label(620, 24, "No phase timings recorded."))
    ends = [t for _, spans in rows for s in spans for t in (s.start, s.end) if t] + (
        [report.ended_at] if report.ended_at else [])
    t_end = max(ends)
    span = max((t_end - t0).total_seconds(), 1.0)
    rto_target = report.targets.rto_seconds if report.targets else None
    if rto_target is not None and span < rto_target <= 2 * span:  # show the headroom unless it squashes the bars
        span = rto_target * 1.04
    plot_w = width - label_w - right
    n = len(rows)
    row_h = 24 if n <= 30 else 16 if n <= 80 else 12
    top, axis_h, legend_h = 34, 26, 30
    both_axes = n > 30
    axis_bottom = top + n * row_h
    height = axis_bottom + (axis_h if both_axes else 6) + legend_h

    def x_of(moment: datetime) -> float:
        return label_w + max(0.0, (moment - t0).total_seconds()) / span * plot_w

    ticks, tick, step = [], 0.0, tick_step(span, 12)
    while tick <= span + 1e-6:
        x = label_w + tick / span * plot_w
        labels = [Label(x, top - 10, axis_label(tick))]
        if both_axes:
            labels.append(Label(x, axis_bottom + 16, axis_label(tick)))
        ticks.append(VerticalTick(x, top - 4, axis_bottom, tuple(labels)))
        tick += step
    target, target_note = None, None
    if rto_target is not None and 0 < rto_target <= span:
        x = label_w + rto_target / span * plot_w
        target = TargetLine(x, top - 4, axis_bottom, Label(x + 4, top + 10, "RTO target", "start"))
    elif rto_target is not None:
        target_note = Label(width - right, top + 10, f"RTO target {format_seconds(rto_target)}, beyond this axis",
                            "end")
    font = 12 if row_h >= 20 else 10
    bar_h = max(4.0, row_h * 0.62)
    drawn = []
    for i, (vm, spans) in enumerate(rows):
        y = top + i * row_h
        bars = []
        for s in spans:
            label, colour = PHASES[s.phase]
            x1 = x_of(s.start)
            x2 = x_of(s.end) if s.end else x_of(t_end)
            tip = (f"{vm.vm} \u00b7 {label}: {format_time(s.start, False)} \u2192 "
                   + (f"{format_time(s.end, False)} ({format_seconds((s.end - s.start).total_seconds())})"
                      if s.end else "no end recorded"))
            bars.append(Bar(x1, y + (row_h - bar_h) / 2, max(x2 - x1, 2.0), bar_h, colour, s.end is None, tip))
        drawn.append(TimelineRow(vm.vm, Label(label_w - 8, y + row_h / 2 + font * 0.35, shorten(vm.vm, 28), "end"),
                                 font, vm.outcome is DrillOutcome.FAILED, tuple(bars)))
    legend_y = height - legend_h + 12
    legend, x = [], label_w
    for label, colour in PHASES.values():
        legend.append(Swatch("box", x, legend_y, colour, Label(x + 20, legend_y + 9, label, "start")))
        x += 130
    legend.append(Swatch("open", x, legend_y, OPEN_COLOUR, Label(x + 20, legend_y + 9, "no end recorded", "start")))
    if rto_target is not None:
        x += 150
        legend.append(Swatch("target", x, legend_y + 5, TARGET_COLOUR,
                             Label(x + 28, legend_y + 9, "RTO target (from the drill start)", "start")))
    missing = len(vms) - n
    hidden = Label(width - right, legend_y + 9, f"{missing} VM{'s' if missing != 1 else ''} without phase timings "
                   "not shown", "end") if missing else None
    return Timeline(
        width=width, height=height, rows=tuple(drawn),
        bands=tuple(Band(0, top + i * row_h, width - right, row_h) for i in range(n) if i % 2),
        ticks=tuple(ticks), axis_title=Label(label_w - 8, top - 10, "since start \u2192", "end"),
        target=target, target_note=target_note, legend=tuple(legend), hidden=hidden)


# ------------------------------------------------------------------------------------ trend
@dataclass(frozen=True)
class HorizontalTick:
    """A horizontal grid line at ``y`` from ``x1`` to ``x2``, labelled left of the plot."""

    y: float
    x1: float
    x2: float
    label: Label


@dataclass(frozen=True)
class Column:
    """One drill of the trend: its verdict marker above the plot, its date below.

    ``css`` is ``pass`` or ``fail``; the current drill's date is bold and says "this run" under it.
    """

    x: float
    marker_y: float
    css: str
    mark: str
    mark_y: float
    title: str
    date: Label
    current: bool
    this_run: Label | None = None


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    title: str


@dataclass(frozen=True)
class Series:
    """A line through ``dots`` (drawn when there are two or more) in one colour."""

    colour: str
    dots: tuple[Dot, ...]

    @property
    def has_line(self) -> bool:
        return len(self.dots) > 1


@dataclass(frozen=True)
class Range:
    """The spread of all VMs' RTO in one drill: a thick vertical line."""

    x: float
    y1: float
    y2: float
    title: str


@dataclass(frozen=True)
class Segment:
    """One drill's RTO target: a horizontal dash across its column."""

    x1: float
    x2: float
    y: float


@dataclass(frozen=True)
class Trend:
    width: int
    height: int
    ticks: tuple[HorizontalTick, ...]
    verdict_title: Label
    rto_title: Label
    columns: tuple[Column, ...]
    target_segments: tuple[Segment, ...]
    target_label: Label | None
    ranges: tuple[Range, ...]
    series: tuple[Series, ...]
    legend: tuple[Swatch, ...]


def trend_runs(report: DrillReport, history: Sequence[DrillReport]) -> list[DrillReport]:
    """The drills the trend shows, oldest first: the last ``TREND_RUNS - 1`` of ``history``, then ``report``."""
    return [*history[-(TREND_RUNS - 1):], report] if TREND_RUNS > 1 else [report]


def trend(report: DrillReport, history: Sequence[DrillReport]) -> Trend:
    """
    Lay out the verdict and the RTO per VM of the site's recent drills, this one on the right.

    With one to eight VMs drilled this time, each gets its own line (a VM missing from a drill
    leaves a gap); with more, the chart summarises each drill: the slowest and the median VM's RTO
    as lines over the range of all VMs. The RTO target is a dashed step line (it may change from
    one drill to the next). The y axis starts at 0 and reaches at least a minute.

    :param report: The drill being reported (the rightmost column).
    :param history: Earlier reports of the site, oldest first.
    """
    runs = trend_runs(report, history)
    current_vms = [vm.vm for vm in report.vms if vm.outcome is not DrillOutcome.SKIPPED]
    per_vm = 0 < len(current_vms) <= len(VM_COLOURS)
    points = [{vm.vm: vm.rto_seconds for vm in run.vms if vm.rto_seconds is not None} for run in runs]
    targets = [run.targets.rto_seconds if run.targets else None for run in runs]
    values = [v for p in points for v in p.values()] + [t for t in targets if t is not None]
    y_max = max(values + [60.0]) * 1.12
    width, left, right, top, plot_h = 1240, 70, 130, 56, 190
    legend_h = 34
    height = top + plot_h + 44 + legend_h
    plot_w = width - left - right
    n = len(runs)
    col = plot_w / n

    def x_of(i: int) -> float:
        return left + (i + 0.5) * col

    def y_of(v: float) -> float:
        return top + plot_h - v / y_max * plot_h

    ticks, tick, step = [], 0.0, tick_step(y_max, 5)
    while tick <= y_max:
        y = y_of(tick)
        ticks.append(HorizontalTick(y, left, left + plot_w, Label(left - 8, y + 4, axis_label(tick), "end")))
        tick += step
    columns = []
    for i, run in enumerate(runs):
        x = x_of(i)
        passed = run.verdict is DrillVerdict.PASS
        date = run.started_at.strftime("%Y-%m-%d" if n <= 12 else "%d %b") if run.started_at else "?"
        current = i == n - 1
        columns.append(Column(
            x, top - 38, "pass" if passed else "fail", OK_MARK if passed else BAD_MARK, top - 34,
            f"{run.run_id} \u00b7 {run.verdict} \u00b7 {format_time(run.started_at)}",
            Label(x, top + plot_h + 18, date), current, Label(x, top + plot_h + 32, "this run") if current else None))
    segments = tuple(Segment(x_of(i) - col / 2, x_of(i) + col / 2, y_of(t)) for i, t in enumerate(targets)
                     if t is not None)
    target_label = Label(left + plot_w + 6, segments[-1].y + 4, f"RTO target {format_seconds(targets[-1])}",
                         "start") if segments else None
    ranges: list[Range] = []
    series: list[Series] = []
    legend_entries: list[tuple[str, str, str]] = []  # (label, colour, kind)
    if per_vm:
        for colour, name in zip(VM_COLOURS, current_vms):
            series.append(Series(colour, tuple(Dot(x_of(i), y_of(p[name]), f"{name}: RTO {format_seconds(p[name])}")
                                               for i, p in enumerate(points) if name in p)))
            legend_entries.append((name + ("" if name in points[-1] else " (no RTO this run)"), colour, "line"))
    else:
        for i, p in enumerate(points):
            if p:
                lo, hi = min(p.values()), max(p.values())
                ranges.append(Range(x_of(i), y_of(lo), y_of(hi),
                                    f"{len(p)} VMs: RTO {format_seconds(lo)} to {format_seconds(hi)}"))
        for summary, colour, label in ((max, SLOWEST_COLOUR, "slowest VM"), (median, MEDIAN_COLOUR, "median VM")):
            series.append(Series(colour, tuple(Dot(x_of(i), y_of(v), f"{label}: RTO {format_seconds(v)}")
                                               for i, p in enumerate(points) if p
                                               for v in (summary(p.values()),))))
            legend_entries.append((label, colour, "line"))
        legend_entries.append(("range of all VMs", RANGE_COLOUR, "range"))
    legend_entries.append(("RTO target", TARGET_COLOUR, "target"))
    legend, x, y = [], left, height - legend_h + 14
    for label, colour, kind in legend_entries:
        label = shorten(label, 40)
        legend.append(Swatch(kind, x, y, colour, Label(x + 28, y + 4, label, "start")))
        x += 52 + len(label) * 7.5
    return Trend(
        width=width, height=height, ticks=tuple(ticks),
        verdict_title=Label(left - 8, top - 34, "verdict", "end"),
        rto_title=Label(14, top + plot_h / 2, "RTO"),
        columns=tuple(columns), target_segments=segments, target_label=target_label,
        ranges=tuple(ranges), series=tuple(series), legend=tuple(legend))


# -------------------------------------------------------------------- recovery plan groups
@dataclass(frozen=True)
class PlanSpan:
    """One group or action of a plan's drill on the plan's own timeline, as percentages of its width."""

    label: str
    detail: str
    left: float
    width: float
    css: str
    title: str


def plan_spans(start: datetime | None, end: datetime | None,
               steps: list[tuple[str, str, datetime | None, datetime | None, bool]]) -> list[PlanSpan]:
    """Lay a plan's groups and actions out on its timeline (``start`` to ``end``), in run order.

    ``steps`` are ``(label, detail, start, end, ok)``; a step that never started is left out, one
    still running (no end) runs to ``end``. Widths are at least 0.6% so an instant stays visible.
    """
    if start is None or end is None or end <= start:
        return []
    span = (end - start).total_seconds()
    out = []
    for label, detail, begin, finish, ok in steps:
        if begin is None:
            continue
        finish = finish or end
        left = max(0.0, min(100.0, (begin - start).total_seconds() / span * 100))
        width = max(0.6, min(100.0 - left, (finish - begin).total_seconds() / span * 100))
        took = (finish - begin).total_seconds()
        out.append(PlanSpan(label=label, detail=detail, left=round(left, 2), width=round(width, 2),
                            css="good" if ok else "bad",
                            title=f"{label}: {format_time(begin, False)} to {format_time(finish, False)} "
                                  f"({took:.0f}s)"))
    return out
