"""The report's sections for experts: curves, per-class tables, highlighted clips, the per-clip
table and the run's details, with a glossary of the terms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from captum_video.pipeline._html import bar_chart, cell, esc, line_chart, media

__all__ = ["class_name", "expert_sections"]

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


def class_name(summary: Mapping[str, Any], cls: int | None) -> str:
    names = summary.get("class_names")
    if cls is None:
        return "n/a"
    return str(names[cls]) if names and 0 <= cls < len(names) else str(cls)


# --------------------------------------------------------------------------- plain words


def expert_sections(
    summary: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    config: Mapping[str, Any],
    manifests: Sequence[Mapping[str, Any]],
    max_rows: int,
) -> list[str]:
    overall, per_class = summary["overall"], summary["per_class"]
    parts = ["<h3>Relevance over time</h3>"]
    series = {name: m["curve"] for name, m in overall["methods"].items() if m["curve"]}
    parts.append(line_chart(series, "mean share of relevance per frame, all clips"))
    for name in summary["methods"]:
        by_class = {
            c["class_name"]: c["methods"][name]["curve"]
            for c in per_class
            if c["methods"][name]["curve"]
        }
        parts.append(line_chart(by_class, f"{name}: mean share of relevance per frame, per class"))
    parts.append(_class_table(summary))
    ops = list(overall["temporal_sensitivity"])
    if ops:
        parts.append("<h3>Temporal sensitivity per class</h3>")
        bars = {c["class_name"]: [c["temporal_sensitivity"][op] for op in ops] for c in per_class}
        parts.append(bar_chart(bars, ops, "mean probability drop"))
    parts += _highlights(summary, records)
    parts += _clip_table(summary, records, config, max_rows)
    parts += _run_details(summary, config, manifests)
    parts.append("<h3>Glossary</h3><dl>")
    parts += [f"<dt><b>{esc(k)}</b></dt><dd>{esc(v)}</dd>" for k, v in _GLOSSARY]
    parts.append("</dl>")
    return parts


def _class_table(summary: Mapping[str, Any]) -> str:
    ops = list(summary["overall"]["temporal_sensitivity"])
    methods = summary["methods"]
    grouped = "true class" if summary["grouped_by"] == "label" else "predicted class"
    head = [f'<th class="l">{grouped}</th><th>clips</th><th>accuracy</th><th>p(answer)</th>']
    head += [f"<th>drop {esc(op)}</th>" for op in ops]
    for name in methods:
        head.append(f"<th>{esc(name)} spatial bias</th>")
        if summary["has_masks"]:
            head.append(f"<th>{esc(name)} relevance mass</th>")
    rows = []
    for c in [*summary["per_class"], {**summary["overall"], "class_name": "all"}]:
        cells = [f'<td class="l">{esc(c["class_name"])}</td><td>{c["clips"]}</td>']
        cells += [cell(c["accuracy"], "pct"), cell(c["probability"])]
        cells += [cell(c["temporal_sensitivity"][op]) for op in ops]
        for name in methods:
            cells.append(cell(c["methods"][name]["spatial_bias"]))
            if summary["has_masks"]:
                cells.append(cell(c["methods"][name]["relevance_mass"]))
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (
        '<h3>Per class</h3><table id="per-class"><thead><tr>'
        f"{''.join(head)}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
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
        label = class_name(summary, r["label"]) if r["label"] is not None else "?"
        parts.append(
            f'<div class="clip" data-index="{index}"><b>{esc(r["name"])}</b><br>'
            f"true: {esc(label)}, predicted: {esc(class_name(summary, r['prediction']))} "
            f"(p={r['probability']:.2f})"
        )
        for name, path in (exports.get(str(index)) or {}).items():
            parts.append(f"<div>{esc(name)}{media(path)}</div>")
        parts.append("</div>")
    parts.append("</div>")
    if summary.get("tensorboard"):
        parts.append(
            f'<p class="note">The same clips are in TensorBoard: <code>tensorboard --logdir '
            f"{esc(summary['tensorboard'])}</code> (run from the report's folder), tab "
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
    head += "<th>p</th>" + "".join(f"<th>drop {esc(op)}</th>" for op in ops)
    head += "".join(f"<th>{esc(m)} spatial bias</th>" for m in summary["methods"])
    head += '<th class="l">videos</th>'
    rows = []
    for r in records[:max_rows]:
        label = class_name(summary, r["label"]) if r["label"] is not None else ""
        links = " ".join(
            f'<a href="{esc(p)}">{esc(m)}</a>'
            for m, p in (exports.get(str(r["index"])) or {}).items()
        )
        cells = [
            f'<td>{r["index"]}</td><td class="l">{esc(r["name"])}</td><td class="l">'
            f'{esc(label)}</td><td class="l">{esc(class_name(summary, r["prediction"]))}</td>',
            cell(r["probability"]),
            *(cell(r["temporal_sensitivity"][op]) for op in ops),
            *(cell(r["methods"][m]["spatial_bias"]) for m in summary["methods"]),
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
        f'<tr><td class="l">{esc(k)}</td><td class="l">{esc(v)}</td></tr>' for k, v in rows
    )
    return [f'<h3>Run details</h3><table id="run">{cells}</table>']


# --------------------------------------------------------------------------- charts (SVG)
