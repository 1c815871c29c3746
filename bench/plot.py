#!/usr/bin/env python3
"""Plot bench/run.sh results as an SVG (python3 standard library only).

    python3 bench/plot.py bench/results/latest.tsv bench/results/latest.svg

One panel per placement (unpinned, pinned to CPU 0). Each group of bars is one metric and shows
every contender's median as a speed relative to a reference, on a log scale: for file-system
metrics the reference is inproc (the same ramfs served inside schememount), for the stream and
round-trip metrics it is the plain pipe. Throughputs divide by the reference, times are divided
into it, so a bar above the 1x line is always faster than the reference and one below slower.
Bars that could not be measured are marked n/a (O_DIRECT refused) or err (failed).
"""
import math
import statistics
import sys
from collections import OrderedDict

COLORS = OrderedDict(
    [
        ("tmpfs", "#9e9e9e"),
        ("inproc", "#4c78a8"),
        ("bridge", "#e45756"),
        ("sshfs", "#54a24b"),
        ("frames", "#f58518"),
        ("chain", "#72b7b2"),
        ("shared", "#ff9da6"),
        ("loop", "#eeca3b"),
        ("pipe", "#b279a2"),
    ]
)
FS_CONTENDERS = ["tmpfs", "inproc", "bridge", "sshfs"]
PIPE_CONTENDERS = ["bridge", "frames", "chain", "shared", "loop", "pipe"]  # all but bridge, pipe: round trips only
TITLES = {
    "unpinned": "unpinned (the scheduler places every process)",
    "cpu0": "pinned: every process on CPU 0",
}

BAR = 11  # bar width
GAP = 16  # space between groups
PLOT_H = 300  # height of the bar area
LABEL_H = 130  # room for the rotated metric names
LEFT, RIGHT, TOP = 70, 20, 70
PANEL_GAP = 50


def load(path):
    """{(placement, contender, metric): [values]}, placements, metrics (first-seen order)."""
    values, placements, metrics = {}, [], OrderedDict()
    with open(path, encoding="utf-8") as tsv:
        for number, line in enumerate(tsv, 1):
            line = line.rstrip("\n")
            if not line or line.startswith("placement\t"):
                continue
            fields = line.split("\t")
            if len(fields) != 6:
                sys.exit(f"plot.py: {path}:{number}: expected 6 fields")
            placement, contender, metric, unit, _rep, value = fields
            if placement not in placements:
                placements.append(placement)
            metrics.setdefault(metric, unit)
            values.setdefault((placement, contender, metric), []).append(value)
    return values, placements, metrics


def median(raw):
    numbers = [float(v) for v in raw if v not in ("n/a", "err")]
    return statistics.median(numbers) if numbers else None


def status(raw):
    if not raw:
        return "–"
    return "err" if "err" in raw else "n/a"


def relative(value, reference, unit):
    """Speed relative to the reference: > 1 is faster whatever the unit."""
    if value is None or reference is None or value <= 0 or reference <= 0:
        return None
    return value / reference if unit.endswith("/s") else reference / value


def groups_for(values, placement, metrics):
    """[(metric, [(contender, ratio or None, note)], reference)] for one placement."""
    pipe_metrics = {m for (_, c, m) in values if c == "pipe"}
    groups = []
    for metric, unit in metrics.items():
        is_pipe = metric in pipe_metrics
        contenders = PIPE_CONTENDERS if is_pipe else FS_CONTENDERS
        contenders = [
            c for c in contenders
            if c not in ("frames", "chain", "shared", "loop") or (placement, c, metric) in values
        ]
        reference = "pipe" if is_pipe else "inproc"
        ref = median(values.get((placement, reference, metric), []))
        bars = []
        for contender in contenders:
            raw = values.get((placement, contender, metric), [])
            ratio = relative(median(raw), ref, unit)
            bars.append((contender, ratio, None if ratio is not None else status(raw)))
        groups.append((metric, bars, reference))
    return groups


def esc(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fmt_ratio(x):
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 0.1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def render(values, placements, metrics):
    panels = [(p, groups_for(values, p, metrics)) for p in placements]
    ratios = [r for _, groups in panels for _, bars, _ in groups for _, r, _ in bars if r]
    lo = math.floor(math.log10(min(ratios + [0.5])))
    hi = math.ceil(math.log10(max(ratios + [2.0])))
    lo, hi = max(lo, -4), min(hi, 4)

    n_groups = max((len(g) for _, g in panels), default=1)
    widest = max((len(bars) for _, g in panels for _, bars, _ in g), default=4)
    group_w = widest * BAR + GAP
    width = LEFT + n_groups * group_w + RIGHT
    panel_h = PLOT_H + LABEL_H + PANEL_GAP
    height = TOP + len(panels) * panel_h + 10

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="16" font-weight="bold">'
        "scheme-bridge benchmark: speed relative to a reference (log scale, higher is faster)"
        "</text>",
        f'<text x="{LEFT}" y="40" font-size="12">file systems: relative to inproc '
        "(ramfs served inside schememount); streams and round trips: relative to a plain pipe. "
        "Medians of bench/run.sh.</text>",
    ]
    x = LEFT
    for name, color in COLORS.items():  # legend
        out.append(f'<rect x="{x}" y="50" width="12" height="12" fill="{color}"/>')
        out.append(f'<text x="{x + 16}" y="60" font-size="12">{name}</text>')
        x += 90

    def y_of(ratio, top):
        clamped = min(max(math.log10(ratio), lo), hi)
        return top + (hi - clamped) / (hi - lo) * PLOT_H

    for index, (placement, groups) in enumerate(panels):
        top = TOP + index * panel_h + 20
        out.append(
            f'<text x="{LEFT}" y="{top - 6}" font-size="14" font-weight="bold">'
            f"{esc(TITLES.get(placement, placement))}</text>"
        )
        for k in range(lo, hi + 1):  # grid and axis labels
            y = y_of(10.0**k, top)
            stroke = "#333" if k == 0 else "#ddd"
            out.append(
                f'<line x1="{LEFT}" y1="{y:.1f}" x2="{width - RIGHT}" y2="{y:.1f}" stroke="{stroke}"/>'
            )
            label = f"{10.0 ** k:g}x"
            out.append(
                f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{label}</text>'
            )
        base = y_of(1.0, top)
        previous_reference = None
        for g, (metric, bars, reference) in enumerate(groups):
            gx = LEFT + g * group_w + GAP / 2
            if previous_reference is not None and reference != previous_reference:
                sep = gx - GAP / 2
                out.append(
                    f'<line x1="{sep:.1f}" y1="{top}" x2="{sep:.1f}" y2="{top + PLOT_H}" '
                    'stroke="#333" stroke-dasharray="4,3"/>'
                )
                out.append(
                    f'<text x="{sep + 4:.1f}" y="{top + 12}" font-size="11">vs pipe</text>'
                )
            previous_reference = reference
            for b, (contender, ratio, note) in enumerate(bars):
                bx = gx + b * BAR
                cx = bx + BAR / 2
                if ratio is None:
                    out.append(
                        f'<text x="{cx:.1f}" y="{base - 4:.1f}" font-size="9" fill="#555" '
                        f'transform="rotate(-90 {cx:.1f} {base - 4:.1f})">{esc(note)}</text>'
                    )
                    continue
                y = y_of(ratio, top)
                y0, y1 = sorted((y, base))
                out.append(
                    f'<rect x="{bx:.1f}" y="{y0:.1f}" width="{BAR - 1}" height="{max(y1 - y0, 1):.1f}" '
                    f'fill="{COLORS.get(contender, "#000")}"><title>{esc(contender)} {esc(metric)}: '
                    f"{fmt_ratio(ratio)}x {esc(reference)}</title></rect>"
                )
                if contender == reference:
                    continue  # 1x by definition; the bar is the baseline itself
                ty = y - 3 if ratio >= 1 else y + 3
                anchor = "start" if ratio >= 1 else "end"
                out.append(
                    f'<text x="{cx + 3:.1f}" y="{ty:.1f}" font-size="8" text-anchor="{anchor}" '
                    f'transform="rotate(-90 {cx + 3:.1f} {ty:.1f})">{fmt_ratio(ratio)}</text>'
                )
            lx = gx + len(bars) * BAR / 2
            ly = top + PLOT_H + 12
            out.append(
                f'<text x="{lx:.1f}" y="{ly}" font-size="11" text-anchor="end" '
                f'transform="rotate(-45 {lx:.1f} {ly})">{esc(metric)}</text>'
            )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: plot.py RESULTS.tsv OUT.svg")
    values, placements, metrics = load(sys.argv[1])
    if not placements:
        sys.exit(f"plot.py: no measurements in {sys.argv[1]}")
    with open(sys.argv[2], "w", encoding="utf-8") as svg:
        svg.write(render(values, placements, metrics))


if __name__ == "__main__":
    main()
