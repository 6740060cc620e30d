"""Geometry of the drill report's charts (report_charts): scales, ticks, bars, series, legends."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from site_recovery.records import DASH, DrillReport, format_seconds
from site_recovery.report_charts import (
    PHASES,
    TREND_RUNS,
    VM_COLOURS,
    axis_label,
    format_time,
    shorten,
    tick_step,
    timeline,
    trend,
    trend_runs,
)
from site_recovery.vocabulary import DrillPhase

START = datetime(2026, 11, 28, 1, 0, 0, tzinfo=timezone.utc)
#: the timeline's plot: 1240 wide, VM names in the first 210, 24 kept free on the right
LABEL_W, PLOT_W = 210, 1240 - 210 - 24
#: the trend's plot: from x 70, 1040 wide; from y 56, 190 high
LEFT, PLOT_WIDTH, TOP, PLOT_H = 70, 1040, 56, 190


def _at(seconds: float | None) -> str | None:
    return None if seconds is None else (START + timedelta(seconds=seconds)).isoformat()


def vm(name: str, *spans: tuple[str, float | None, float | None], outcome: str = "passed",
       rto: float | None = None) -> dict:
    return {"vm": name, "outcome": outcome, "rto_seconds": rto,
            "timeline": [{"phase": phase, "start": _at(start), "end": _at(end)} for phase, start, end in spans]}


def report(*vms: dict, started: datetime | None = START, ended_after: float | None = None, rto_target: float = 1800,
           verdict: str = "PASS", run_id: str = "r") -> DrillReport:
    return DrillReport.model_validate({
        "site": "lab", "dag_id": "d", "run_id": run_id, "trigger": "scheduled", "verdict": verdict,
        "started_at": started.isoformat() if started else None, "ended_at": _at(ended_after),
        "targets": {"rpo_seconds": 900, "rto_seconds": rto_target}, "vms": list(vms)})


# ------------------------------------------------------------------------------------ formats
@pytest.mark.parametrize(("seconds", "text"), [
    (None, DASH), (math.nan, DASH), (0, "0s"), (44.6, "45s"), (60, "1m"), (755, "12m 35s"), (1800, "30m"),
    (3600, "1h"), (7500, "2h 05m"), (86400, "1d"), (93600, "1d 02h"), (-45, "-45s"), (-90, "-1m 30s"),
])
def test_durations_read_as_a_dr_engineer_says_them(seconds, text):
    assert format_seconds(seconds) == text


def test_axis_labels_are_compact_and_start_at_zero():
    assert [axis_label(s) for s in (0, 0.2, 45, 90, 300, 5400, 7200)] == ["0", "0", "45s", "1m30s", "5m", "1h30m",
                                                                          "2h"]
    assert format_seconds(90, sep="") == "1m30s"


def test_times_are_utc_with_or_without_the_date():
    assert format_time(START) == "2026-11-28 01:00:00 UTC"
    assert format_time(START, with_date=False) == "01:00:00"
    assert format_time(None) == DASH


@pytest.mark.parametrize(("span", "max_ticks", "step"), [
    (10, 12, 1), (60, 12, 5), (61, 12, 10), (67.2, 5, 15), (1420, 12, 120), (1872, 12, 300), (2016, 5, 600),
    (86400 * 12, 12, 86400), (86400 * 40, 5, 86400 * 8),
])
def test_tick_step_is_the_smallest_round_step_that_fits(span, max_ticks, step):
    assert tick_step(span, max_ticks) == step
    assert span / step <= max_ticks


def test_shorten_marks_the_cut():
    assert shorten("SQL-PRD-01", 28) == "SQL-PRD-01"
    assert shorten("x" * 30, 28) == "x" * 27 + "\u2026" and len(shorten("x" * 30, 28)) == 28


# ------------------------------------------------------------------------------------ timeline
def test_timeline_without_phase_timings_says_so():
    for empty in (report(), report(vm("A"), vm("B", (DrillPhase.TEST_FAILOVER, None, 60)))):
        chart = timeline(empty)
        assert chart.rows == () and chart.height == 40
        assert chart.empty.text == "No phase timings recorded." and (chart.empty.x, chart.empty.y) == (620, 24)


def test_timeline_places_phases_on_one_axis_from_the_drill_start():
    chart = timeline(report(vm("A", ("test_failover", 60, 660), ("verify", 660, 760), ("cleanup", 800, 1000)),
                            ended_after=1200, rto_target=3600))

    # the axis runs from the start to the last moment known (the report's end); the target is beyond twice that
    span = 1200
    (row,) = chart.rows
    failover, verify, cleanup = row.bars
    assert failover.x == pytest.approx(LABEL_W + 60 / span * PLOT_W)
    assert failover.width == pytest.approx(600 / span * PLOT_W)
    assert verify.x == pytest.approx(failover.x + failover.width)
    assert cleanup.x + cleanup.width == pytest.approx(LABEL_W + 1000 / span * PLOT_W)
    assert [bar.colour for bar in row.bars] == [PHASES[p][1] for p in DrillPhase]
    assert not any(bar.open_ended for bar in row.bars)
    assert failover.title == "A \u00b7 Test failover: 01:01:00 \u2192 01:11:00 (10m)"
    assert chart.target is None and chart.target_note.text == "RTO target 1h, beyond this axis"
    # 1200 s in at most 12 steps: every 2 minutes, the first tick at the start
    assert [t.labels[0].text for t in chart.ticks] == ["0", "2m", "4m", "6m", "8m", "10m", "12m", "14m", "16m",
                                                       "18m", "20m"]
    assert chart.ticks[0].x == LABEL_W and chart.ticks[-1].x == pytest.approx(LABEL_W + PLOT_W)


def test_timeline_stretches_to_show_the_rto_target_when_it_is_near():
    chart = timeline(report(vm("A", ("test_failover", 0, 1000)), rto_target=1800))

    span = 1800 * 1.04
    assert chart.target.x == pytest.approx(LABEL_W + 1800 / span * PLOT_W)
    assert chart.target.label.text == "RTO target" and chart.target_note is None
    assert chart.rows[0].bars[0].width == pytest.approx(1000 / span * PLOT_W)
    assert chart.legend[-1].kind == "target"


def test_timeline_draws_a_phase_without_an_end_open_to_the_axis_end_and_skips_one_without_a_start():
    chart = timeline(report(vm("A", ("test_failover", 0, 600), ("verify", 600, None), ("cleanup", None, 900)),
                            vm("B", outcome="failed"), ended_after=1200, rto_target=100_000))

    (row,) = chart.rows
    assert [bar.open_ended for bar in row.bars] == [False, True]  # the cleanup had no start
    # open up to the last moment known, the report's end
    assert row.bars[1].x + row.bars[1].width == pytest.approx(LABEL_W + PLOT_W)
    assert row.bars[1].title.endswith("no end recorded")
    assert chart.hidden.text == "1 VM without phase timings not shown"
    assert [s.kind for s in chart.legend] == ["box", "box", "box", "open", "target"]


def test_timeline_without_a_start_time_starts_at_the_first_phase():
    chart = timeline(report(vm("A", ("test_failover", 300, 900)), started=None, rto_target=100_000))

    assert chart.rows[0].bars[0].x == LABEL_W and chart.rows[0].bars[0].width == pytest.approx(PLOT_W)


def test_timeline_keeps_very_short_phases_visible():
    chart = timeline(report(vm("A", ("test_failover", 0, 3600), ("verify", 3600, 3600)), rto_target=100_000))

    assert chart.rows[0].bars[1].width == 2.0


@pytest.mark.parametrize(("count", "row_h", "font", "axes"), [(1, 24, 12, 1), (30, 24, 12, 1), (31, 16, 10, 2),
                                                              (81, 12, 10, 2)])
def test_timeline_rows_shrink_as_vms_are_added(count, row_h, font, axes):
    chart = timeline(report(*[vm(f"VM-{i:03d}", ("test_failover", i, i + 600), outcome="failed" if i == 0 else
                                 "passed") for i in range(count)]))

    assert len(chart.rows) == count and {r.font_size for r in chart.rows} == {font}
    assert chart.height == 34 + count * row_h + (26 if axes == 2 else 6) + 30
    assert all(len(t.labels) == axes for t in chart.ticks)
    assert [b.y for b in chart.bands] == [34 + i * row_h for i in range(1, count, 2)]  # zebra: every other row
    assert chart.rows[0].failed and not any(r.failed for r in chart.rows[1:])


def test_timeline_shortens_long_vm_names_but_keeps_them_in_the_tooltip():
    name = "A-VERY-LONG-VM-NAME-FROM-A-LEGACY-CLUSTER-01"
    (row,) = timeline(report(vm(name, ("test_failover", 0, 60)))).rows

    assert row.name == name and row.label.text == shorten(name, 28) and row.label.anchor == "end"


# ------------------------------------------------------------------------------------ trend
def _run(weeks_ago: int, rtos: dict[str, float], verdict: str = "PASS", rto_target: float = 1800) -> DrillReport:
    return report(*[vm(name, rto=rto) for name, rto in rtos.items()], started=START - timedelta(weeks=weeks_ago),
                  verdict=verdict, rto_target=rto_target, run_id=f"w{weeks_ago}")


def test_trend_of_a_first_drill_is_one_column_with_one_dot_per_vm_and_no_lines():
    chart = trend(_run(0, {"A": 600, "B": 900}), [])

    (column,) = chart.columns
    assert column.x == LEFT + PLOT_WIDTH / 2 and column.current and column.this_run.text == "this run"
    assert column.css == "pass" and column.date.text == "2026-11-28"
    assert [len(s.dots) for s in chart.series] == [1, 1] and not any(s.has_line for s in chart.series)
    assert [s.colour for s in chart.series] == list(VM_COLOURS[:2])
    assert [s.text.text for s in chart.legend] == ["A", "B", "RTO target"]


def test_trend_scale_starts_at_zero_and_leaves_headroom_over_the_highest_value():
    chart = trend(_run(0, {"A": 600}), [])

    y_max = 1800 * 1.12  # the target is the highest value
    assert chart.ticks[0].y == TOP + PLOT_H and chart.ticks[0].label.text == "0"
    assert [t.label.text for t in chart.ticks] == ["0", "10m", "20m", "30m"]
    (dot,) = chart.series[0].dots
    assert dot.y == pytest.approx(TOP + PLOT_H - 600 / y_max * PLOT_H) and dot.title == "A: RTO 10m"
    (segment,) = chart.target_segments
    assert segment.y == pytest.approx(TOP + PLOT_H - 1800 / y_max * PLOT_H)
    assert (segment.x1, segment.x2) == (LEFT, LEFT + PLOT_WIDTH)
    assert chart.target_label.text == "RTO target 30m"


def test_trend_reaches_at_least_a_minute():
    chart = trend(_run(0, {"A": 5}, rto_target=10), [])

    assert chart.ticks[-1].label.text == "1m" and chart.ticks[-1].y == pytest.approx(TOP + PLOT_H - PLOT_H / 1.12)


def test_trend_draws_a_line_per_vm_with_gaps_where_a_drill_has_no_rto():
    history = [_run(2, {"A": 600, "B": 700}, verdict="FAIL"), _run(1, {"B": 650})]
    chart = trend(_run(0, {"A": 620}), history)

    a, = chart.series  # only the VMs of this drill get a line
    assert [round((d.x - LEFT) / (PLOT_WIDTH / 3) - 0.5) for d in a.dots] == [0, 2] and a.has_line
    assert [c.css for c in chart.columns] == ["fail", "pass", "pass"]
    assert [c.current for c in chart.columns] == [False, False, True]
    assert chart.ranges == ()


def test_trend_says_when_a_vm_has_no_rto_this_run_and_ignores_skipped_vms():
    current = report(vm("A", rto=None, outcome="failed"), vm("S", outcome="skipped"))
    chart = trend(current, [_run(1, {"A": 600, "S": 500})])

    assert [s.text.text for s in chart.legend] == ["A (no RTO this run)", "RTO target"]


def test_trend_summarises_many_vms_as_slowest_median_and_range():
    rtos = {f"VM-{i:02d}": 600 + 10 * i for i in range(len(VM_COLOURS) + 1)}
    chart = trend(_run(0, rtos), [_run(1, rtos)])

    slowest, median = chart.series
    assert [d.title for d in slowest.dots] == ["slowest VM: RTO 11m 20s"] * 2
    assert [d.title for d in median.dots] == ["median VM: RTO 10m 40s"] * 2
    assert [r.title for r in chart.ranges] == ["9 VMs: RTO 10m to 11m 20s"] * 2
    assert chart.ranges[0].y1 > chart.ranges[0].y2  # from the fastest (low) to the slowest (high)
    assert [(s.kind, s.text.text) for s in chart.legend] == [
        ("line", "slowest VM"), ("line", "median VM"), ("range", "range of all VMs"), ("target", "RTO target")]
    # each legend entry starts after the previous one's text
    assert [s.x for s in chart.legend] == [70, 70 + 52 + 10 * 7.5, 70 + 104 + 19 * 7.5, 70 + 156 + 35 * 7.5]


def test_trend_shows_the_last_twenty_drills_with_short_dates():
    history = [_run(w, {"A": 600}) for w in range(30, 0, -1)]
    runs = trend_runs(_run(0, {"A": 600}), history)
    chart = trend(runs[-1], history)

    assert len(runs) == TREND_RUNS and runs[0].run_id == f"w{TREND_RUNS - 1}"
    assert len(chart.columns) == TREND_RUNS and chart.columns[0].date.text == "18 Jul"


def test_trend_target_follows_each_drills_own_target():
    chart = trend(_run(0, {"A": 600}, rto_target=1200), [_run(1, {"A": 600}, rto_target=1800)])

    old, new = chart.target_segments
    assert old.y < new.y and old.x2 == new.x1
    assert chart.target_label.text == "RTO target 20m" and chart.target_label.y == pytest.approx(new.y + 4)
