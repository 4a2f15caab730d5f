r"""A self-contained HTML report of an explained data set, for two kinds of reader.

The seed framework (survey 002, section 5) asks that explanations fit their reader: an analyst
wants a plain statement of what the model used, a developer wants curves and tables.
:func:`write_report` turns the output folder of :func:`captum_video.pipeline.explain_dataset`
into one HTML file with

- *In plain words*: how often the model was right, whether motion or appearance drove its
  decisions (temporal sensitivity as numbers, and the spatial bias of each explanation),
  which frames mattered, and whether the relevance fell on the deciding object;
- *For experts*: relevance-over-time curves (overall and per class), per-class tables,
  temporal sensitivity per class, the highlighted clips (links to the exported videos and the
  TensorBoard logs), the per-clip table and the run's details.

Styles are inline, charts are inline SVG and nothing is fetched from the network, so the file
opens anywhere; only the exported clip videos are separate files, linked relatively. Every
number the summary states sits in a ``<span class="num" data-key=... data-value=...>`` so
tests and scripts can read it back exactly.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from captum_video.pipeline.store import atomic_write, load_manifests, load_records

__all__ = ["write_report", "render_report"]

_COLOURS = ("#1565c0", "#e65100", "#2e7d32", "#6a1b9a", "#c62828", "#00838f", "#9e9d24")

_CSS = """
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1b1b1b;
margin:0;background:#f6f7f9}
main{max-width:980px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:32px 0 8px;border-bottom:2px solid
#dde1e6;padding-bottom:4px}h3{font-size:16px;margin:20px 0 6px}
.sub{color:#5f6368;margin:0 0 16px}
.card{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:16px 20px;margin:12px 0}
.verdict{font-size:19px;font-weight:600}
.verdict.motion{color:#1565c0}.verdict.appearance{color:#e65100}.verdict.both{color:#2e7d32}
.num{font-weight:600;font-variant-numeric:tabular-nums}
.note{color:#5f6368;font-size:13px}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
th,td{border:1px solid #dde1e6;padding:4px 8px;text-align:right}
th{background:#eef1f4}td.l,th.l{text-align:left}
.clips{display:flex;flex-wrap:wrap;gap:12px}
.clip{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:8px;font-size:13px}
.clip video,.clip img{display:block;max-width:300px;image-rendering:pixelated}
svg text{font:11px system-ui,sans-serif;fill:#333}
code{background:#eef1f4;padding:1px 4px;border-radius:3px}
"""

_GLOSSARY = (
    (
        "Relevance",
        "how much a pixel of a frame pushed the model towards the explained class, "
        "according to an explanation method.",
    ),
    (
        "Temporal sensitivity",
        "the drop of the model's probability for the explained class when "
        "the clip is frozen (its first frame shown throughout: same look, no motion) or its frames "
        "are shuffled (same frames, wrong order). Measured on the model, once per clip.",
    ),
    (
        "Spatial bias",
        "the share of an explanation's relevance that selective relevance removes "
        "because it does not change over time (0 = all relevance on moving structure, 1 = all on "
        "still structure). It describes the explanation; see captum_video.metrics.spatial_bias.",
    ),
    (
        "Relevance mass",
        "the share of positive relevance inside the ground-truth mask of the "
        "deciding object (only for data sets that provide masks).",
    ),
    (
        "Relevance over time",
        "the share of a clip's absolute relevance in each frame; the curves average it over clips.",
    ),
)


def write_report(
    out_dir: str | os.PathLike,
    path: str | os.PathLike | None = None,
    title: str | None = None,
    max_rows: int = 500,
) -> Path:
    r"""Write the HTML report of an :func:`~captum_video.batch.explain_dataset` run.

    Args:
        out_dir (str or PathLike): the run's folder (with ``run.json``, ``summary.json`` and
            ``shards/``).
        path (str or PathLike, optional): where to write; default ``out_dir/report.html``.
            Links to clips are relative to ``out_dir``, so keep the report beside it.
        title (str, optional): the page title. Default: "Explanations of <model> on N clips"
        max_rows (int, optional): rows of the per-clip table (the full table is
            ``clips.csv``). Default: 500

    Returns:
        pathlib.Path: the written file.

    Raises:
        FileNotFoundError: ``out_dir`` has no ``summary.json`` (the run did not finish).

    Example::

        >>> run = explain_dataset(model, data, ["gradcam_tube"], "runs/x", report=False)
        >>> write_report("runs/x")
        PosixPath('runs/x/report.html')
    """
    out = Path(out_dir)
    if not (out / "summary.json").exists():
        raise FileNotFoundError(f"{out} has no summary.json; run explain_dataset to the end first")
    summary = json.loads((out / "summary.json").read_text())
    config = json.loads((out / "run.json").read_text())
    text = render_report(
        summary, load_records(out), config, load_manifests(out), title=title, max_rows=max_rows
    )
    target = Path(path) if path is not None else out / "report.html"
    atomic_write(target, text.encode("utf-8"))
    return target


def render_report(
    summary: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    config: Mapping[str, Any],
    manifests: Sequence[Mapping[str, Any]] = (),
    title: str | None = None,
    max_rows: int = 500,
) -> str:
    r"""The report as an HTML string (see :func:`write_report`).

    Args:
        summary (mapping): ``summary.json`` (:func:`captum_video.summary.summarize` plus the
            ``highlights`` and ``exports`` of the merge).
        records (sequence of dict): per-clip records (:func:`captum_video.shards.load_records`).
        config (mapping): ``run.json``.
        manifests (sequence of dict, optional): shard manifests, for the run details.
        title (str, optional): the page title.
        max_rows (int, optional): rows of the per-clip table. Default: 500

    Returns:
        str: a complete HTML document.

    Example::

        >>> page = render_report(summary, records, config)
        >>> page.startswith("<!DOCTYPE html>")
        True
    """
    n = summary["num_clips"]
    title = title or f"Explanations of {config.get('model', 'a model')} on {n} clips"
    body = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="sub">{n} clips, {summary["num_frames"]} frames each; methods: '
        f"{_e(', '.join(summary['methods']))}.</p>",
        '<section id="plain"><h2>In plain words</h2>',
        *_plain_words(summary),
        "</section>",
        '<section id="experts"><h2>For experts</h2>',
        *_expert_sections(summary, records, config, manifests, max_rows),
        "</section>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


# --------------------------------------------------------------------------- formatting


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _num(key: str, value: float | None, kind: str = "num") -> str:
    """A number of the summary, readable by people (text) and programs (data-value)."""
    if not _finite(value):
        return f'<span class="num" data-key="{_e(key)}" data-value="">n/a</span>'
    assert value is not None
    text = {"num": f"{value:.2f}", "pct": f"{100 * value:.0f}%", "int": f"{value:.0f}"}[kind]
    return (
        f'<span class="num" data-key="{_e(key)}" data-fmt="{kind}" '
        f'data-value="{value!r}">{text}</span>'
    )


def _class_name(summary: Mapping[str, Any], cls: int | None) -> str:
    names = summary.get("class_names")
    if cls is None:
        return "n/a"
    return str(names[cls]) if names and 0 <= cls < len(names) else str(cls)


# --------------------------------------------------------------------------- plain words


def _plain_words(summary: Mapping[str, Any]) -> list[str]:
    overall = summary["overall"]
    parts = ['<div class="card" id="decisions">']
    if summary["has_labels"] and overall["accuracy"] is not None:
        right = round(overall["accuracy"] * overall["clips"])
        parts.append(
            f"<p>The model saw {overall['clips']} clips and got "
            f"{_num('overall.correct', right, 'int')} of them right "
            f"({_num('overall.accuracy', overall['accuracy'], 'pct')}).</p>"
        )
    else:
        parts.append(f"<p>The model saw {overall['clips']} clips (no true labels were given).</p>")
    parts.append(
        "<p>On average it gave its answer a probability of "
        f"{_num('overall.probability', overall['probability'])} (1 = fully sure).</p></div>"
    )
    parts += _motion_or_appearance(summary)
    parts += _which_frames(summary)
    if summary["has_masks"]:
        parts += _right_reasons(summary)
    parts.append(
        '<p class="note">These are averages over all clips; the tables under "For experts" '
        "break them down by class. An explanation method shows where the model's evidence "
        "was, not why; methods can disagree, so compare them.</p>"
    )
    return parts


_VERDICTS = {
    "motion": (
        "This model decides mainly from motion.",
        "Taking the movement away removes most of its confidence, so how things move in the "
        "clip drives its decisions.",
    ),
    "appearance": (
        "This model decides mainly from appearance.",
        "Its confidence hardly changes without movement, so it decides from what single "
        "frames look like (colours, shapes, background), not from how things move.",
    ),
    "both": (
        "This model uses both motion and appearance.",
        "It loses part of its confidence without movement, but keeps much of it: how things "
        "look and how they move both count.",
    ),
}


def _motion_or_appearance(summary: Mapping[str, Any]) -> list[str]:
    overall = summary["overall"]
    temporal = overall["temporal_sensitivity"]
    parts = ['<div class="card" id="motion"><h3>Motion or appearance?</h3>']
    verdict = summary.get("reliance")
    if verdict in _VERDICTS:
        headline, meaning = _VERDICTS[verdict]
        parts.append(f'<p class="verdict {verdict}" data-verdict="{verdict}">{headline}</p>')
    p = overall["target_probability"]
    if "freeze" in temporal:
        drop = temporal["freeze"]
        after = p - drop if _finite(p) and _finite(drop) else None
        parts.append(
            "<p>When each clip was frozen into a still picture (its first frame shown "
            "throughout), the model's probability for the explained class fell from "
            f"{_num('overall.target_probability', p)} to "
            f"{_num('overall.frozen_probability', after)} on average: a drop of "
            f"{_num('overall.temporal_sensitivity.freeze', drop)}."
        )
        if "shuffle" in temporal:
            parts.append(
                " With the frames shuffled into a random order it fell by "
                f"{_num('overall.temporal_sensitivity.shuffle', temporal['shuffle'])}."
            )
        parts.append("</p>")
        if verdict in _VERDICTS:
            parts.append(f"<p>{_VERDICTS[verdict][1]}</p>")
    elif "shuffle" in temporal:
        parts.append(
            "<p>With the frames shuffled into a random order, the model's probability for the "
            "explained class fell by "
            f"{_num('overall.temporal_sensitivity.shuffle', temporal['shuffle'])} on average.</p>"
        )
    else:
        parts.append("<p>Temporal sensitivity was not measured in this run.</p>")
    for name, m in overall["methods"].items():
        bias = m["spatial_bias"]
        if bias is None:
            continue
        parts.append(
            f"<p>Spatial bias of the <b>{_e(name)}</b> explanation: "
            f"{_num(f'overall.methods.{name}.spatial_bias', bias)}: about "
            f"{_num(f'overall.methods.{name}.spatial_bias_pct', bias, 'pct')} of the relevance "
            "it shows lies on parts of the picture that do not change over time (0 = all of it "
            "on moving things, 1 = all of it on still things).</p>"
        )
    parts.append(
        '<p class="note">The probability drops are measured on the model itself; spatial bias '
        "describes an explanation of it.</p></div>"
    )
    return parts


def _which_frames(summary: Mapping[str, Any]) -> list[str]:
    t = summary["num_frames"]
    parts = ['<div class="card" id="frames"><h3>Which frames mattered?</h3>']
    for name, m in summary["overall"]["methods"].items():
        curve, core, peak = m["curve"], m["core_frames"], m["peak_frame"]
        if curve is None:
            parts.append(f"<p><b>{_e(name)}</b> gave no relevance to compare frames.</p>")
            continue
        start, stop = core
        key = f"overall.methods.{name}"
        where = (
            f"frame {_num(key + '.core_start', start + 1, 'int')}"
            if stop - start == 1
            else f"frames {_num(key + '.core_start', start + 1, 'int')} to "
            f"{_num(key + '.core_stop', stop, 'int')}"
        )
        spread = stop - start >= 0.4 * t
        lead = (
            f"<p>According to <b>{_e(name)}</b>, the relevance is spread over much of the clip: "
            f"it takes {where} of {t} to hold half of it, so no short moment stands out. "
            if spread
            else f"<p>According to <b>{_e(name)}</b>, {where} of {t} hold half of the relevance. "
        )
        parts.append(
            lead + f"The most relevant single frame is frame "
            f"{_num(key + '.peak_frame', peak + 1, 'int')} with "
            f"{_num(key + '.peak_share', curve[peak], 'pct')} of it.</p>"
        )
    parts.append('<p class="note">Frames are numbered from 1.</p></div>')
    return parts


def _right_reasons(summary: Mapping[str, Any]) -> list[str]:
    parts = ['<div class="card" id="object"><h3>Did it look at the right thing?</h3>']
    for name, m in summary["overall"]["methods"].items():
        mass = m["relevance_mass"]
        if mass is None:
            continue
        parts.append(
            f"<p><b>{_e(name)}</b>: {_num(f'overall.methods.{name}.relevance_mass', mass, 'pct')}"
            " of the positive relevance lies on the object that decides the label (the data "
            "set's ground-truth mask).</p>"
        )
    parts.append("</div>")
    return parts


# --------------------------------------------------------------------------- for experts


def _expert_sections(
    summary: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    config: Mapping[str, Any],
    manifests: Sequence[Mapping[str, Any]],
    max_rows: int,
) -> list[str]:
    overall, per_class = summary["overall"], summary["per_class"]
    parts = ["<h3>Relevance over time</h3>"]
    series = {name: m["curve"] for name, m in overall["methods"].items() if m["curve"]}
    parts.append(_line_chart(series, "mean share of relevance per frame, all clips"))
    for name in summary["methods"]:
        by_class = {
            c["class_name"]: c["methods"][name]["curve"]
            for c in per_class
            if c["methods"][name]["curve"]
        }
        parts.append(_line_chart(by_class, f"{name}: mean share of relevance per frame, per class"))
    parts.append(_class_table(summary))
    ops = list(overall["temporal_sensitivity"])
    if ops:
        parts.append("<h3>Temporal sensitivity per class</h3>")
        bars = {c["class_name"]: [c["temporal_sensitivity"][op] for op in ops] for c in per_class}
        parts.append(_bar_chart(bars, ops, "mean probability drop"))
    parts += _highlights(summary, records)
    parts += _clip_table(summary, records, config, max_rows)
    parts += _run_details(summary, config, manifests)
    parts.append("<h3>Glossary</h3><dl>")
    parts += [f"<dt><b>{_e(k)}</b></dt><dd>{_e(v)}</dd>" for k, v in _GLOSSARY]
    parts.append("</dl>")
    return parts


def _cell(value: Any, kind: str = "num") -> str:
    if not _finite(value):
        return "<td>n/a</td>"
    return f"<td>{value:.0%}</td>" if kind == "pct" else f"<td>{value:.3f}</td>"


def _class_table(summary: Mapping[str, Any]) -> str:
    ops = list(summary["overall"]["temporal_sensitivity"])
    methods = summary["methods"]
    grouped = "true class" if summary["grouped_by"] == "label" else "predicted class"
    head = [f'<th class="l">{grouped}</th><th>clips</th><th>accuracy</th><th>p(answer)</th>']
    head += [f"<th>drop {_e(op)}</th>" for op in ops]
    for name in methods:
        head.append(f"<th>{_e(name)} spatial bias</th>")
        if summary["has_masks"]:
            head.append(f"<th>{_e(name)} relevance mass</th>")
    rows = []
    for c in [*summary["per_class"], {**summary["overall"], "class_name": "all"}]:
        cells = [f'<td class="l">{_e(c["class_name"])}</td><td>{c["clips"]}</td>']
        cells += [_cell(c["accuracy"], "pct"), _cell(c["probability"])]
        cells += [_cell(c["temporal_sensitivity"][op]) for op in ops]
        for name in methods:
            cells.append(_cell(c["methods"][name]["spatial_bias"]))
            if summary["has_masks"]:
                cells.append(_cell(c["methods"][name]["relevance_mass"]))
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (
        '<h3>Per class</h3><table id="per-class"><thead><tr>'
        f"{''.join(head)}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _media(path: str) -> str:
    src = _e(path)
    if path.endswith(".gif"):
        return f'<a href="{src}"><img src="{src}" alt="{src}"></a>'
    return (
        f'<video src="{src}" controls loop muted playsinline preload="metadata"></video>'
        f'<a href="{src}">{src}</a>'
    )


def _highlights(summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> list[str]:
    exports = summary.get("exports") or {}
    if not summary.get("highlights"):
        return []
    by_index = {r["index"]: r for r in records}
    parts = [
        "<h3>Highlighted clips</h3>",
        '<p class="note">Misclassified clips first, then the most confident clip of each '
        "class; each video shows the original beside the relevance overlay.</p>",
        '<div class="clips">',
    ]
    for index in summary["highlights"]:
        r = by_index[index]
        label = _class_name(summary, r["label"]) if r["label"] is not None else "?"
        parts.append(
            f'<div class="clip" data-index="{index}"><b>{_e(r["name"])}</b><br>'
            f"true: {_e(label)}, predicted: {_e(_class_name(summary, r['prediction']))} "
            f"(p={r['probability']:.2f})"
        )
        for name, path in (exports.get(str(index)) or {}).items():
            parts.append(f"<div>{_e(name)}{_media(path)}</div>")
        parts.append("</div>")
    parts.append("</div>")
    if summary.get("tensorboard"):
        parts.append(
            f'<p class="note">The same clips are in TensorBoard: <code>tensorboard --logdir '
            f"{_e(summary['tensorboard'])}</code> (run from the report's folder), tab "
            '"Relevance Video".</p>'
        )
    return parts


def _clip_table(
    summary: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    config: Mapping[str, Any],
    max_rows: int,
) -> list[str]:
    ops = list(summary["overall"]["temporal_sensitivity"])
    exports = summary.get("exports") or {}
    head = '<th>#</th><th class="l">clip</th><th class="l">true</th><th class="l">predicted</th>'
    head += "<th>p</th>" + "".join(f"<th>drop {_e(op)}</th>" for op in ops)
    head += "".join(f"<th>{_e(m)} spatial bias</th>" for m in summary["methods"])
    head += '<th class="l">videos</th>'
    rows = []
    for r in records[:max_rows]:
        label = _class_name(summary, r["label"]) if r["label"] is not None else ""
        links = " ".join(
            f'<a href="{_e(p)}">{_e(m)}</a>'
            for m, p in (exports.get(str(r["index"])) or {}).items()
        )
        cells = [
            f'<td>{r["index"]}</td><td class="l">{_e(r["name"])}</td><td class="l">'
            f'{_e(label)}</td><td class="l">{_e(_class_name(summary, r["prediction"]))}</td>',
            _cell(r["probability"]),
            *(_cell(r["temporal_sensitivity"][op]) for op in ops),
            *(_cell(r["methods"][m]["spatial_bias"]) for m in summary["methods"]),
            f'<td class="l">{links}</td>',
        ]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    more = (
        f'<p class="note">First {max_rows} of {len(records)} clips; all of them are in '
        '<a href="clips.csv">clips.csv</a>.</p>'
        if len(records) > max_rows
        else '<p class="note">Also as <a href="clips.csv">clips.csv</a>.</p>'
    )
    return [
        "<h3>Per clip</h3>",
        more,
        f'<table id="per-clip"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
        "</table>",
    ]


def _run_details(
    summary: Mapping[str, Any], config: Mapping[str, Any], manifests: Sequence[Mapping[str, Any]]
) -> list[str]:
    seconds = sum(m.get("seconds", 0.0) for m in manifests)
    ranks = sorted({m.get("rank", 0) for m in manifests})
    calls = len({m.get("run_id") for m in manifests})
    rows = [
        ("model", config.get("model")),
        ("methods", ", ".join(config["methods"])),
        ("explained class", config["target"]),
        ("preprocessing", config.get("preprocess") or "none"),
        ("shards", f"{len(manifests)} of {config['shard_size']} clips"),
        ("written by", f"{calls} call(s), rank(s) {', '.join(map(str, ranks))}"),
        (
            "compute time",
            f"{seconds:.1f} s ({summary['num_clips'] / max(seconds, 1e-9):.2f} clips/s)",
        ),
        ("attributions", "float16" if config["float16"] else "float32"),
        ("selective relevance sigma", config["selective_sigma"]),
    ]
    cells = "".join(
        f'<tr><td class="l">{_e(k)}</td><td class="l">{_e(v)}</td></tr>' for k, v in rows
    )
    return [f'<h3>Run details</h3><table id="run">{cells}</table>']


# --------------------------------------------------------------------------- charts (SVG)


def _line_chart(series: Mapping[str, Sequence[float]], caption: str) -> str:
    """Lines over frames 1..T as inline SVG, with axes and a legend."""
    if not series:
        return ""
    w, h, left, right, top, bottom = 640, 220, 48, 150, 12, 32
    t = max(len(v) for v in series.values())
    peak = max(max(v) for v in series.values()) or 1.0
    pw, ph = w - left - right, h - top - bottom

    def xy(i: int, v: float) -> str:
        x = left + (pw * i / (t - 1) if t > 1 else pw / 2)
        return f"{x:.1f},{top + ph * (1 - v / peak):.1f}"

    out = [
        f'<figure><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" '
        f'height="{h}" role="img"><title>{_e(caption)}</title>',
        f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#888"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#888"/>',
    ]
    for frac in (0, 0.5, 1):
        y = top + ph * (1 - frac)
        out.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{peak * frac:.2f}</text>'
        )
    for i in sorted({0, (t - 1) // 2, t - 1}):
        x = xy(i, 0).split(",")[0]
        out.append(f'<text x="{x}" y="{top + ph + 14}" text-anchor="middle">{i + 1}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{h - 4}" text-anchor="middle">frame</text>')
    for k, (name, values) in enumerate(series.items()):
        colour = _COLOURS[k % len(_COLOURS)]
        points = " ".join(xy(i, v) for i, v in enumerate(values))
        out.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}" '
            f'data-series="{_e(name)}"/>'
        )
        y = top + 14 * k + 8
        out.append(
            f'<rect x="{left + pw + 12}" y="{y - 8}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{left + pw + 26}" y="{y + 1}">{_e(name)}</text>'
        )
    out.append(f'</svg><figcaption class="note">{_e(caption)}</figcaption></figure>')
    return "".join(out)


def _bar_chart(
    groups: Mapping[str, Sequence[float | None]], keys: Sequence[str], caption: str
) -> str:
    """Grouped bars (one group per class, one bar per key) as inline SVG."""
    w, h, left, top, bottom = 640, 200, 48, 12, 36
    values = [float(v) for vs in groups.values() for v in vs if v is not None and _finite(v)]
    peak = max([abs(v) for v in values] + [1e-9])
    lo = min([0.0, *values])
    ph, pw = h - top - bottom, w - left - 120
    gw = pw / max(1, len(groups))
    bw = gw * 0.8 / max(1, len(keys))

    def y(v: float) -> float:
        return top + ph * (peak - v) / (peak - lo)

    out = [
        f'<figure><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" '
        f'height="{h}" role="img"><title>{_e(caption)}</title>',
        f'<line x1="{left}" y1="{y(0):.1f}" x2="{left + pw}" y2="{y(0):.1f}" stroke="#888"/>',
        f'<text x="{left - 4}" y="{y(peak) + 4:.1f}" text-anchor="end">{peak:.2f}</text>',
        f'<text x="{left - 4}" y="{y(0) + 4:.1f}" text-anchor="end">0</text>',
    ]
    for g, (name, vs) in enumerate(groups.items()):
        x0 = left + g * gw + gw * 0.1
        for k, v in enumerate(vs):
            if not _finite(v):
                continue
            assert v is not None
            top_y, base = min(y(v), y(0)), max(y(v), y(0))
            out.append(
                f'<rect x="{x0 + k * bw:.1f}" y="{top_y:.1f}" width="{bw - 2:.1f}" '
                f'height="{base - top_y:.1f}" fill="{_COLOURS[k % len(_COLOURS)]}">'
                f"<title>{_e(name)} {_e(keys[k])}: {v:.3f}</title></rect>"
            )
        out.append(
            f'<text x="{x0 + gw * 0.4:.1f}" y="{top + ph + 14}" text-anchor="middle">'
            f"{_e(name)}</text>"
        )
    for k, key in enumerate(keys):
        out.append(
            f'<rect x="{left + pw + 12}" y="{top + 14 * k}" width="10" height="10" '
            f'fill="{_COLOURS[k % len(_COLOURS)]}"/><text x="{left + pw + 26}" '
            f'y="{top + 14 * k + 9}">{_e(key)}</text>'
        )
    out.append(f'</svg><figcaption class="note">{_e(caption)}</figcaption></figure>')
    return "".join(out)
