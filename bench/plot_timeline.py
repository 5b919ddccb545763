#!/usr/bin/env python3
"""Plot a shoal-bench --timeline CSV (and a reshard STATUS poll CSV) as an SVG.

    python3 bench/plot_timeline.py TIMELINE.csv [STATUS.csv] -o out.svg [--title T] [--warmup 1]

Three stacked panels over one time axis (seconds since the first request):
throughput (ops/s), p99 latency (ms) and GET hit rate (%), one step per timeline
interval; the move (from the `add` row of STATUS.csv to its first `done`/`failed`
row) is a shaded band. Dashed lines: the steady means (intervals from --warmup s to
the ADD) and the targets derived from them (0.75 x steady ops/s, 3 x steady p99).
Hand-written SVG, standard library only (no matplotlib).

STATUS.csv columns (bench/reshard.sh): unix_s,t_seconds,state,keys_moved,bytes_moved,...
TIMELINE.csv columns (shoal-bench): t_seconds,ops,ops_per_sec,p50_us,p99_us,max_us,
gets,hits,misses,errors,unix_s
"""

import argparse
import csv
import math
import sys
from xml.sax.saxutils import escape

W, PANEL_H, GAP = 960, 190, 46
LEFT, RIGHT, TOP, BOTTOM = 84, 24, 74, 56


def fnum(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def read_timeline(path):
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows.append({k: fnum(v) for k, v in r.items()})
    if not rows:
        sys.exit(f"{path}: no rows")
    prev = 0.0
    for r in rows:
        r["start"] = prev
        prev = r["t_seconds"]
    return rows


def read_status(path, t0_unix):
    """(move start, move end, final row) in timeline seconds, or Nones."""
    if not path:
        return None, None, None
    start = end = None
    last = None
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            t = fnum(r["unix_s"]) - t0_unix
            if start is None:
                start = t
            last = r
            if end is None and r["state"] in ("done", "failed"):
                end = t
                break
    if start is not None and end is None and last is not None:
        end = fnum(last["unix_s"]) - t0_unix
    return start, end, last


def nice_step(span, n=5):
    if span <= 0:
        return 1.0
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def fmt_tick(v, step):
    if step >= 1:
        if abs(v) >= 1e6:
            return f"{v / 1e6:g}M"
        if abs(v) >= 1e3:
            return f"{v / 1e3:g}k"
        return f"{v:g}"
    digits = max(0, -int(math.floor(math.log10(step))))
    return f"{v:.{digits}f}"


class Svg:
    def __init__(self, w, h):
        self.w, self.h, self.out = w, h, []

    def add(self, s):
        self.out.append(s)

    def text(self, x, y, s, size=12, anchor="start", color="#222", weight="normal", rotate=None, halo=False):
        tr = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate is not None else ""
        # halo: a white outline under the glyphs, readable over lines
        h = ' stroke="#fff" stroke-width="3" paint-order="stroke"' if halo else ""
        self.add(
            f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'fill="{color}" font-weight="{weight}"{tr}{h}>{escape(s)}</text>'
        )

    def line(self, x1, y1, x2, y2, color="#000", width=1, dash=None):
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.add(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" '
            f'stroke-width="{width}"{d}/>'
        )

    def render(self):
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.w}" height="{self.h}" '
            f'viewBox="0 0 {self.w} {self.h}" font-family="DejaVu Sans, Arial, sans-serif">\n'
            f'<rect width="{self.w}" height="{self.h}" fill="#fff"/>\n'
            + "\n".join(self.out)
            + "\n</svg>\n"
        )


def panel(svg, y0, rows, key, label, color, t_max, band, ylo=None, yhi=None, refs=(), note=None, copy=None):
    """One panel: steps of rows[key] (None = gap) over [0, t_max]."""
    x0, x1 = LEFT, W - RIGHT
    y1 = y0 + PANEL_H
    vals = [r[key] for r in rows if r[key] is not None]
    lo = 0.0 if ylo is None else ylo
    hi = max(vals + [v for v, _, _ in refs] + [1e-9]) * 1.1 if yhi is None else yhi
    step = nice_step(hi - lo)
    hi = lo + step * math.ceil((hi - lo) / step - 1e-9)

    def X(t):
        return x0 + (x1 - x0) * t / t_max

    def Y(v):
        v = min(max(v, lo), hi)
        return y1 - (y1 - y0) * (v - lo) / (hi - lo)

    if band[0] is not None:
        svg.add(
            f'<rect x="{X(band[0]):.1f}" y="{y0}" width="{max(1.0, X(band[1]) - X(band[0])):.1f}" '
            f'height="{PANEL_H}" fill="#f4b183" fill-opacity="0.35"/>'
        )
    if copy is not None:
        svg.add(
            f'<rect x="{X(copy[0]):.1f}" y="{y0}" width="{max(1.0, X(copy[1]) - X(copy[0])):.1f}" '
            f'height="{PANEL_H}" fill="#f4b183" fill-opacity="0.45"/>'
        )
    # grid and y ticks
    v = lo
    while v <= hi + 1e-9:
        svg.line(x0, Y(v), x1, Y(v), "#e3e3e3")
        svg.text(x0 - 6, Y(v) + 4, fmt_tick(v, step), 11, "end", "#444")
        v += step
    tstep = nice_step(t_max, 10)
    t = 0.0
    while t <= t_max + 1e-9:
        svg.line(X(t), y0, X(t), y1, "#f0f0f0")
        svg.line(X(t), y1, X(t), y1 + 4, "#444")
        svg.text(X(t), y1 + 16, fmt_tick(t, tstep), 11, "middle", "#444")
        t += tstep
    svg.add(f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{PANEL_H}" fill="none" stroke="#444"/>')
    svg.text(18, y0 + PANEL_H / 2, label, 12, "middle", "#222", rotate=-90)
    for rv, rlabel, rcolor in refs:
        svg.line(x0, Y(rv), x1, Y(rv), rcolor, 1.2, "6 4")
        svg.text(x1 - 4, Y(rv) - 4, rlabel, 10, "end", rcolor, halo=True)
    # steps; a None value breaks the line
    seg = []
    segs = []
    for r in rows:
        val = r[key]
        if val is None:
            if seg:
                segs.append(seg)
            seg = []
            continue
        seg += [(X(r["start"]), Y(val)), (X(r["t_seconds"]), Y(val))]
    if seg:
        segs.append(seg)
    for s in segs:
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in s)
        svg.add(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.6"/>')
    if note:
        svg.text(x0 + 8, y0 + 16, note, 11, "start", "#333", halo=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("timeline")
    ap.add_argument("status", nargs="?")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--title", default="shoal-bench timeline")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds left out of the steady means")
    ap.add_argument("--copy", nargs=2, type=float, metavar=("START", "END"),
                    help="unix times of the copy phase (keys moving), drawn darker inside the move band")
    a = ap.parse_args()

    rows = read_timeline(a.timeline)
    first = rows[0]
    t0_unix = first["unix_s"] - first["t_seconds"]
    mstart, mend, last_status = read_status(a.status, t0_unix)
    copy = (a.copy[0] - t0_unix, a.copy[1] - t0_unix) if a.copy else None
    t_max = rows[-1]["t_seconds"]

    for r in rows:
        ops = r["ops"] or 0
        r["p99_ms"] = r["p99_us"] / 1000.0 if ops > 0 and r["p99_us"] is not None else None
        gets = r["gets"] or 0
        r["hit_pct"] = 100.0 * r["hits"] / gets if gets > 0 else None

    def window(lo, hi, overlap=False):
        if overlap:
            return [r for r in rows if r["t_seconds"] > lo and r["start"] < hi]
        return [r for r in rows if r["start"] >= lo - 1e-3 and r["t_seconds"] <= hi + 1e-3]

    steady = window(a.warmup, mstart if mstart is not None else t_max)
    during = window(mstart, mend, overlap=True) if mstart is not None else []

    def mean_ops(ws):
        span = sum(r["t_seconds"] - r["start"] for r in ws)
        return sum(r["ops"] for r in ws) / span if span > 0 else None

    def mean_p99(ws):
        v = [r["p99_ms"] for r in ws if r["p99_ms"] is not None]
        return sum(v) / len(v) if v else None

    s_ops, m_ops = mean_ops(steady), mean_ops(during)
    s_p99, m_p99 = mean_p99(steady), mean_p99(during)
    gets_m = sum(r["gets"] for r in during)
    hits_m = sum(r["hits"] for r in during)
    hit_m = 100.0 * hits_m / gets_m if gets_m else None
    hit_vals = [r["hit_pct"] for r in rows if r["hit_pct"] is not None]
    hit_min = min(hit_vals) if hit_vals else 100.0

    H = TOP + 3 * PANEL_H + 2 * GAP + BOTTOM
    svg = Svg(W, H)
    svg.text(W / 2, 22, a.title, 14, "middle", weight="bold")
    sub = []
    if mstart is not None:
        sub.append(f"shaded: the move, {mend - mstart:.1f} s from ADD to done")
        if copy is not None:
            sub.append(f"darker: keys copying, {copy[1] - copy[0]:.1f} s (before it the proxy's pre-scan grace)")
        if last_status is not None:
            sub.append(f"{int(fnum(last_status['keys_moved']) or 0):,} keys / {(fnum(last_status['bytes_moved']) or 0) / 1e6:.1f} MB moved")
    sub2 = []
    if s_ops and m_ops:
        sub2.append(f"ops/s during/steady = {m_ops / s_ops:.2f}")
    if s_p99 and m_p99:
        sub2.append(f"p99 during/steady = {m_p99 / s_p99:.2f}")
    if hit_m is not None:
        sub2.append(f"hit rate during = {hit_m:.3f} %")
    svg.text(W / 2, 40, "; ".join(sub), 11, "middle", "#444")
    svg.text(W / 2, 56, "; ".join(sub2) + " (whole move window)", 11, "middle", "#444")

    band = (mstart, mend)
    y = TOP
    refs = []
    if s_ops:
        refs = [(s_ops, f"steady mean {s_ops:,.0f}", "#1f4e79"), (0.75 * s_ops, "0.75 x steady (target)", "#c00000")]
    panel(svg, y, rows, "ops_per_sec", "throughput (ops/s)", "#2e75b6", t_max, band, refs=refs, copy=copy,
          note=f"mean during the move: {m_ops:,.0f} ops/s" if m_ops else None)
    y += PANEL_H + GAP
    refs = []
    if s_p99:
        refs = [(s_p99, f"steady mean p99 {s_p99:.2f} ms", "#1f4e79"), (3 * s_p99, "3 x steady (target)", "#c00000")]
    p99_vals = [r["p99_ms"] for r in rows if r["p99_ms"] is not None]
    cap = None
    if s_p99 and p99_vals and max(p99_vals) > 12 * s_p99:
        cap = 6 * s_p99  # keep the steady level readable; clipped peaks are marked
    note = f"mean of interval p99s during the move: {m_p99:.2f} ms" if m_p99 else ""
    if cap:
        note += f"; axis clipped at {cap:.1f} ms, peak {max(p99_vals):.1f} ms"
    panel(svg, y, rows, "p99_ms", "p99 latency (ms)", "#548235", t_max, band, yhi=cap, refs=refs, note=note or None, copy=copy)
    y += PANEL_H + GAP
    lo = 0.0 if hit_min < 50 else max(0.0, min(99.0, math.floor(hit_min) - 1))
    panel(svg, y, rows, "hit_pct", "GET hit rate (%)", "#7030a0", t_max, band, ylo=lo, yhi=100.5 if lo > 0 else 100, copy=copy,
          note=f"lowest interval: {hit_min:.3f} %; errors in the run: {int(sum(r['errors'] or 0 for r in rows))}")
    svg.text((LEFT + W - RIGHT) / 2, H - 14, "seconds since the first request", 12, "middle")
    with open(a.output, "w") as f:
        f.write(svg.render())
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
