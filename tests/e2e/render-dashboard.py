#!/usr/bin/python3
"""Draws the chart's Grafana dashboard from the answers the end-to-end tier saved.

    tests/e2e/render-dashboard.py ANSWERS.json OUT.png

ANSWERS.json is what tests/e2e/grafana.rs writes (the range answers of every query of
charts/zooherd/files/dashboard.json over a story); OUT.png is a picture of the dashboard with
the panels where the dashboard puts them, drawn with matplotlib (Debian: python3-matplotlib).
It shows the data Prometheus returned, not a screenshot of Grafana.
"""
import json
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DASHBOARD = Path(__file__).resolve().parents[2] / "charts/zooherd/files/dashboard.json"
BACKGROUND, PANEL, TEXT, GRID = "#111217", "#181b1f", "#ccccdc", "#2c3235"
COLOURS = ["#73bf69", "#f2cc0c", "#5794f2", "#ff780a", "#f2495c", "#b877d9", "#8ab8ff", "#ff9830"]
PHASE_COLOURS = {"ACTIVE": "#73bf69", "DEGRADED": "#ff9830", "DOWN": "#f2495c", "PENDING": "#5794f2"}


def legend(fmt, labels):
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt) or "value"


def series(answer):
    for query in answer:
        for result in query["result"]:
            points = [(float(t), float(v)) for t, v in result["values"]]
            yield legend(query["legend"], result["metric"]), points


def draw_timeline(ax, answer, start):
    rows = sorted(series(answer), key=lambda s: s[0])
    for i, (name, points) in enumerate(rows):
        colour = next((c for key, c in PHASE_COLOURS.items() if key in name), None)
        if colour is None:
            state = name.split()[-1]
            colour = {"leader": "#5794f2", "follower": "#73bf69", "observer": "#b877d9"}.get(
                state, "#f2495c")
        for t, v in points:
            if v >= 1:
                ax.barh(i, 2, left=t - start, height=0.8, color=colour, linewidth=0)
    ax.set_yticks(range(len(rows)), [name for name, _ in rows], fontsize=7, color=TEXT)
    ax.invert_yaxis()


def draw_lines(ax, answer, start, unit):
    for i, (name, points) in enumerate(series(answer)):
        points = [(t, v) for t, v in points if v == v]  # NaN (0/0 rates) leaves a gap
        if points:
            ax.plot([t - start for t, _ in points], [v for _, v in points],
                    color=COLOURS[i % len(COLOURS)], linewidth=1.2, label=name)
    if ax.lines:
        ax.legend(fontsize=6, loc="upper left", frameon=False, labelcolor=TEXT, ncol=2)
    if unit not in (None, "none"):
        ax.set_ylabel(unit, fontsize=7, color=TEXT)


def main(answers_path, out_path):
    board = json.loads(DASHBOARD.read_text())
    answers = json.loads(Path(answers_path).read_text())
    start, end = answers["start"], answers["end"]
    by_panel = {}
    for query in answers["queries"]:
        by_panel.setdefault(query["panel"], []).append(query)

    panels = [p for p in board["panels"]]
    # One grid unit more than the panels take, for the last row's axis labels.
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels) + 1
    fig = plt.figure(figsize=(16, height * 0.42), facecolor=BACKGROUND)
    scale_x, scale_y = 1 / 24, 1 / height
    for p in panels:
        g = p["gridPos"]
        left, top = g["x"] * scale_x, 1 - g["y"] * scale_y
        if p["type"] == "row":
            title = p["title"].replace("$ensemble", answers["ensemble"])
            fig.text(left + 0.005, top - 0.6 * scale_y, title, color=TEXT, fontsize=11,
                     fontweight="bold", va="center")
            continue
        # Room on the left for the tick labels: wider for a timeline's row names.
        pad = 0.07 if p["type"] == "state-timeline" else 0.025
        ax = fig.add_axes([left + pad, top - g["h"] * scale_y * 0.88,
                           g["w"] * scale_x - pad - 0.008, g["h"] * scale_y * 0.72])
        ax.set_axisbelow(True)
        ax.set_facecolor(PANEL)
        for spine in ax.spines.values():
            spine.set_color(GRID)
        ax.tick_params(colors=TEXT, labelsize=6)
        ax.grid(color=GRID, linewidth=0.5)
        ax.set_title(p["title"], color=TEXT, fontsize=8, loc="left")
        answer = by_panel.get(p["title"], [])
        if p["type"] == "state-timeline":
            draw_timeline(ax, answer, start)
        else:
            draw_lines(ax, answer, start, p["fieldConfig"]["defaults"].get("unit"))
        ax.set_xlim(0, end - start)
        ax.set_xlabel("seconds into the story", fontsize=6, color=TEXT)
    when = datetime.fromtimestamp(start, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    fig.text(0.995, 0.998, f"{answers['ensemble']}, from {when}: answers of a real Prometheus "
             "scraping the end-to-end cluster", color=TEXT, fontsize=7, ha="right", va="top")
    fig.savefig(out_path, dpi=110, facecolor=BACKGROUND)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
