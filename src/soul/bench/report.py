"""`soul bench report`: Markdown and HTML pages with tables and PNG plots from scored folders.

Each folder is the `--out` of `soul bench score` (it holds `scores.json`); with several folders
the report compares methods: one row per method, and every plot overlays them. Metrics that were
skipped (weights missing) are listed with the file they need and where users get it, never shown
as numbers. Multi-person cases get a table of their people: each mouth's sync with its own track,
with the other people's tracks and with chance (`soul.bench.people`).
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path
from typing import Any

from soul.analysis.lipsync import DEFAULT_MAX_OFFSET
from soul.errors import InputError

# (field, label, direction) in table order; direction says which way is better.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("sync_c", "Sync-C", "↑"),
    ("sync_d", "Sync-D", "↓"),
    ("lmsync_conf", "lmsync conf", "↑"),
    ("lmsync_abs_offset", "|lmsync offset|", "↓"),
    ("people_bind_rate", "people binding", "↑"),
    ("people_own", "own-track r", "↑"),
    ("people_cross_max", "other-track r", "↓"),
    ("arcface_csim", "CSIM (ArcFace)", "↑"),
    ("id_dlib_dist", "id dist (dlib)", "↓"),
    ("color_drift", "colour drift ΔE00", "↓"),
    ("flicker", "flicker", "↓"),
    ("sharpness", "sharpness", "↑"),
    ("noise_sigma", "noise σ", "↓"),
    ("av_align", "AV-Align", "↑"),
    ("text_alignment", "text align (VLM)", "↑"),
    ("video_quality", "video quality", "↑"),
    ("clip_score", "CLIP score", "↑"),
    ("fid", "FID", "↓"),
    ("fvd", "FVD", "↓"),
)
COMPARE_NOTE = ("Means over the cases every method scored without error (cases compared); FID and FVD are "
                "suite-level. '—': no case could be measured (e.g. no face found); 'skipped': weights not supplied.")
CURVE_KEYS = (("id_dlib_dist", "identity distance (dlib) ↓"), ("color_drift", "colour drift ΔE00 ↓"),
              ("lmsync_conf", "lmsync confidence ↑"), ("sharpness", "sharpness ↑"))
FIELD_OWNER = {"sync_c": "syncnet", "sync_d": "syncnet", "arcface_csim": "arcface", "fid": "fid", "fvd": "fvd",
               "clip_score": "clip", "text_alignment": "vlm_judge", "video_quality": "video_quality"}


def load_scores(folder: str | Path) -> dict[str, Any]:
    """`scores.json` of a scored folder, with the per-case |offset| derived for the table."""
    path = Path(folder) / "scores.json"
    if not path.is_file():
        raise InputError(folder, "holds no scores.json", "score it first: soul bench score SUITE OUTPUTS --out DIR")
    data = json.loads(path.read_text())
    for flat in data.get("cases", {}).values():
        if isinstance(flat.get("lmsync_offset"), (int, float)):
            flat["lmsync_abs_offset"] = abs(flat["lmsync_offset"])
    return data


def _mean(data: dict[str, Any], key: str) -> float | None:
    """Mean over the cases in `data["_common"]` (every compared method scored them) or all cases."""
    if key in data.get("suite_metrics", {}):
        return data["suite_metrics"][key]
    common = data.get("_common")
    vals = [c[key] for cid, c in data["cases"].items()
            if (common is None or cid in common) and isinstance(c.get(key), (int, float)) and not isinstance(c.get(key), bool)]
    return sum(vals) / len(vals) if vals else None


def common_cases(runs: list[dict[str, Any]]) -> set[str]:
    """Case ids every run scored without error: methods are compared on the same cases only."""
    sets = [{cid for cid, c in r["cases"].items() if "error" not in c} for r in runs]
    return set.intersection(*sets) if sets else set()


def _skipped_fields(data: dict[str, Any]) -> set[str]:
    names = {s["metric"] for s in data.get("skipped", [])}
    return {f for f, owner in FIELD_OWNER.items() if owner in names}


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "—"
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:80]


def comparison_rows(runs: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and one row per method; a column appears when any method has it or skipped it."""
    cols = [c for c in COLUMNS if any(_mean(r, c[0]) is not None or c[0] in _skipped_fields(r) for r in runs)]
    header = ["method", "cases scored", "cases compared"] + [f"{label} {d}" for _, label, d in cols]
    rows = []
    for r in runs:
        ok = sum(1 for c in r["cases"].values() if "error" not in c)
        row = [r["method"], f"{ok}/{len(r['cases'])}", str(len(r["_common"])) if r.get("_common") is not None else str(ok)]
        for key, _, _ in cols:
            v = _mean(r, key)
            row.append("skipped" if v is None and key in _skipped_fields(r) else _fmt(v))
        rows.append(row)
    return header, rows


def case_rows(run: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    keys = ("category", "duration", "id_dlib_dist", "lmsync_offset", "lmsync_conf", "color_drift", "flicker", "sharpness",
            "noise_sigma", "av_align", "sync_c", "arcface_csim")
    keys = tuple(k for k in keys if any(k in c for c in run["cases"].values()))
    rows = []
    for cid, c in run["cases"].items():
        notes = "; ".join(str(v) for k, v in c.items() if k.endswith("_note") or k == "error")
        rows.append([cid] + [_fmt(c.get(k)) for k in keys] + [notes])
    return ["case", *keys, "notes"], rows


PEOPLE_NOTE = ("Multi-person cases: person k is the k-th face from the left. r = peak correlation of the mouth "
               f"with a track's speech energy over lags within ±{DEFAULT_MAX_OFFSET} frames (lmsync); own = their own track, cross = "
               "each other person's track, chance = their own track shifted out of reach. Binds: own > max cross.")


def people_rows(run: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per person of every multi-person case (none for one-person suites)."""
    rows = []
    for cid, c in run["cases"].items():
        for p in c.get("people") or []:
            binds = {True: "yes", False: "no"}.get(p.get("binds"), "—")
            rows.append([cid, f"{c.get('people_found', '—')}/{c.get('people_expected', '—')}", str(p["person"]),
                         _fmt(p.get("own")), ", ".join(_fmt(v) for v in p.get("cross") or []) or "—", _fmt(p.get("cross_max")),
                         _fmt(p.get("chance")), binds, _fmt(p.get("offset")), p.get("note") or ""])
    return ["case", "faces found/people", "person", "own r", "cross r", "max cross r", "chance r", "binds", "offset", "notes"], rows


def _plot_bars(runs: list[dict[str, Any]], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [c for c in COLUMNS if any(_mean(r, c[0]) is not None for r in runs)]
    if not cols:
        return None
    n = len(cols)
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows), squeeze=False)
    for ax, (key, label, d) in zip(axes.flat, cols):
        vals = [_mean(r, key) for r in runs]
        ax.bar(range(len(runs)), [v if v is not None else 0 for v in vals], color=[f"C{i}" for i in range(len(runs))])
        ax.set_xticks(range(len(runs)), [r["method"] for r in runs], rotation=20, fontsize=7)
        ax.set_title(f"{label} {d}", fontsize=9)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _plot_drift(runs: list[dict[str, Any]], case_id: str, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [(r["method"], r["cases"].get(case_id, {}).get("color_drift_per_second")) for r in runs]
    series = [(m, s) for m, s in series if s]
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(5, 2.6))
    for i, (m, s) in enumerate(series):
        ax.plot(range(len(s)), s, marker="o", ms=3, color=f"C{i}", label=m)
    ax.set_xlabel("second")
    ax.set_ylabel("ΔE00 vs first second")
    ax.set_title(f"colour drift: {case_id}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _plot_long(runs: list[dict[str, Any]], case_id: str, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [(r["method"], r["cases"].get(case_id, {}).get("long_term")) for r in runs]
    curves = [(m, c) for m, c in curves if c]
    if not curves:
        return None
    fig, axes = plt.subplots(1, len(CURVE_KEYS), figsize=(3.2 * len(CURVE_KEYS), 2.6))
    for ax, (key, label) in zip(axes, CURVE_KEYS):
        for i, (m, c) in enumerate(curves):
            xs = [s + c["window_seconds"] / 2 for s in c["start_seconds"]]
            ys = [float("nan") if v is None else v for v in c["curves"].get(key, [])]
            ax.plot(xs[: len(ys)], ys, marker="o", ms=3, color=f"C{i}", label=m)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(f"time (s), {curves[0][1]['window_seconds']:.0f} s windows", fontsize=7)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"long-term: {case_id}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def skipped_rows(runs: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Every skipped metric once (the union over methods), with what it needs and where to get it."""
    seen: dict[str, list[str]] = {}
    for r in runs:
        for s in r.get("skipped", []):
            seen.setdefault(s["metric"], [s["metric"], s["fields"], s["reason"], s["needs"], s["source"]])
    return ["metric", "fields", "why skipped", "needs", "where to get it"], list(seen.values())


def write_report(folders: list[str | Path], out: str | Path, *, title: str = "Soul-Bench report") -> dict[str, Path]:
    """Write `report.md`, `report.html` and `plots/*.png` into `out`; returns their paths."""
    if not folders:
        raise InputError("report", "no scored folders given", "pass one or more --out folders of soul bench score")
    runs = [load_scores(f) for f in folders]
    names = [r["method"] for r in runs]
    for i, r in enumerate(runs):  # two folders with the same method name stay apart in tables and legends
        if names.count(r["method"]) > 1:
            r["method"] = f"{r['method']} ({Path(folders[i]).name})" if Path(folders[i]).name != r["method"] else f"{r['method']} #{i + 1}"
    if len(runs) > 1:
        common = common_cases(runs)
        for r in runs:
            r["_common"] = common
    out = Path(out)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    images: list[tuple[str, Path]] = []
    bars = _plot_bars(runs, plots / "metrics.png")
    if bars:
        images.append(("Metrics by method", bars))
    case_ids = list(dict.fromkeys(cid for r in runs for cid in r["cases"]))
    drift_imgs, long_imgs = [], []
    for cid in case_ids:
        p = _plot_drift(runs, cid, plots / f"drift_{_slug(cid)}.png")
        if p:
            drift_imgs.append((f"Colour drift: {cid}", p))
        p = _plot_long(runs, cid, plots / f"long_{_slug(cid)}.png")
        if p:
            long_imgs.append((f"Long-term curves: {cid}", p))
    header, rows = comparison_rows(runs)
    sk_header, sk_rows = skipped_rows(runs)
    md = [f"# {title}", "", "Methods: " + ", ".join(f"`{r['method']}` ({r['outputs']})" for r in runs), "",
          "## Comparison", "", COMPARE_NOTE, "", _md_table(header, rows), ""]
    h = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
         "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
         "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}th{background:#eee}img{max-width:100%}</style></head><body>",
         f"<h1>{html.escape(title)}</h1>", "<h2>Comparison</h2>", f"<p>{html.escape(COMPARE_NOTE)}</p>", _html_table(header, rows)]
    if sk_rows:
        note = "These metrics need weights or services that were not supplied; they are not scored (never zero)."
        md += ["## Skipped metrics", "", note, "", _md_table(sk_header, sk_rows), ""]
        h += ["<h2>Skipped metrics</h2>", f"<p>{note}</p>", _html_table(sk_header, sk_rows)]
    sections = [("Plots", images), ("Colour drift over time", drift_imgs), ("Long-term curves (per 10 s)", long_imgs)]
    for name, imgs in sections:
        if not imgs:
            continue
        md += [f"## {name}", ""]
        h.append(f"<h2>{html.escape(name)}</h2>")
        for caption, p in imgs:
            rel = p.relative_to(out).as_posix()
            md += [f"![{caption}]({rel})", ""]
            h.append(f"<figure><img src='{html.escape(rel)}' alt='{html.escape(caption)}'><figcaption>{html.escape(caption)}</figcaption></figure>")
    for r in runs:
        ch, cr = case_rows(r)
        md += [f"## Cases: {r['method']}", "", _md_table(ch, cr), ""]
        h += [f"<h2>Cases: {html.escape(r['method'])}</h2>", _html_table(ch, cr)]
        ph, pr = people_rows(r)
        if pr:
            md += [f"## People: {r['method']}", "", PEOPLE_NOTE, "", _md_table(ph, pr), ""]
            h += [f"<h2>People: {html.escape(r['method'])}</h2>", f"<p>{html.escape(PEOPLE_NOTE)}</p>", _html_table(ph, pr)]
    h.append("</body></html>")
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    (out / "report.html").write_text("\n".join(h), encoding="utf-8")
    return {"markdown": out / "report.md", "html": out / "report.html", "plots": plots}
