r"""A self-contained HTML report of an explained data set, for two kinds of reader.

Hiley, Preece and Hicks ("Explainable Deep Learning for Video Recognition Tasks: A Framework
& Recommendations", 2019, section 5) ask that explanations fit their reader: an analyst
wants a plain statement of what the model used, a developer wants curves and tables.
:func:`write_report` turns the output folder of :func:`captum_video.pipeline.explain_dataset`
into one HTML file with

- *In plain words*: how often the model was right, whether motion or appearance drove its
  decisions (temporal sensitivity as numbers, and the spatial bias of each explanation),
  which frames mattered, and whether the relevance fell on the deciding object;
- *Clips that failed* (only when some did): each clip that could not be loaded or explained,
  with the stage and the error (also in ``failures.json``);
- *For experts*: relevance-over-time curves (overall and per class), per-class tables,
  temporal sensitivity per class, the highlighted clips (links to the exported videos and the
  TensorBoard logs), the per-clip table and the run's details.

Styles are inline, charts are inline SVG and nothing is fetched from the network, so the file
opens anywhere; only the exported clip videos are separate files, linked relatively. Every
number the summary states sits in a ``<span class="num" data-key=... data-value=...>`` so
tests and scripts can read it back exactly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from captum_video.pipeline._expert import expert_sections
from captum_video.pipeline._html import CSS, esc, finite, num
from captum_video.pipeline.store import atomic_write, load_manifests, load_records

__all__ = ["write_report", "render_report"]


def write_report(
    out_dir: str | os.PathLike,
    path: str | os.PathLike | None = None,
    title: str | None = None,
    max_rows: int = 500,
) -> Path:
    r"""Write the HTML report of an :func:`~captum_video.pipeline.explain_dataset` run.

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
        summary (mapping): ``summary.json``
            (:func:`~captum_video.pipeline.summary.summarize` plus the ``highlights`` and
            ``exports`` of the merge).
        records (sequence of dict): per-clip records
            (:func:`~captum_video.pipeline.store.load_records`).
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
        f"<h1>{esc(title)}</h1>",
        f'<p class="sub">{n} clips, {summary["num_frames"]} frames each; methods: '
        f"{esc(', '.join(summary['methods']))}"
        + (f"; {len(summary['failures'])} clips failed" if summary.get("failures") else "")
        + ".</p>",
        '<section id="plain"><h2>In plain words</h2>',
        *_plain_words(summary),
        "</section>",
        *_failures(summary),
        '<section id="experts"><h2>For experts</h2>',
        *expert_sections(summary, records, config, manifests, max_rows),
        "</section>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


# --------------------------------------------------------------------------- formatting


def _failures(summary: Mapping[str, Any]) -> list[str]:
    """The clips that could not be explained (none of the numbers above counts them)."""
    failures = summary.get("failures") or []
    if not failures:
        return []
    rows = "".join(
        f'<tr data-index="{f["index"]}"><td>{f["index"]}</td><td class="l">{esc(f["name"])}</td>'
        f'<td class="l">{esc(f["stage"])}</td><td class="l">{esc(f["error"])}</td>'
        f'<td class="l">{esc(f["message"])}</td></tr>'
        for f in failures
    )
    return [
        '<section id="failures"><h2>Clips that failed</h2>',
        f"<p>{num('num_failures', len(failures), 'int')} clips could not be loaded or "
        "explained; the numbers above leave them out. A rerun on the same folder tries them "
        'again (they are also in <a href="failures.json">failures.json</a>).</p>',
        '<table id="failures-table"><thead><tr><th>#</th><th class="l">clip</th>'
        '<th class="l">stage</th><th class="l">error</th><th class="l">message</th></tr>'
        f"</thead><tbody>{rows}</tbody></table></section>",
    ]


def _plain_words(summary: Mapping[str, Any]) -> list[str]:
    overall = summary["overall"]
    parts = ['<div class="card" id="decisions">']
    if summary["has_labels"] and overall["accuracy"] is not None:
        right = round(overall["accuracy"] * overall["clips"])
        parts.append(
            f"<p>The model saw {overall['clips']} clips and got "
            f"{num('overall.correct', right, 'int')} of them right "
            f"({num('overall.accuracy', overall['accuracy'], 'pct')}).</p>"
        )
    else:
        parts.append(f"<p>The model saw {overall['clips']} clips (no true labels were given).</p>")
    parts.append(
        "<p>On average it gave its answer a probability of "
        f"{num('overall.probability', overall['probability'])} (1 = fully sure).</p></div>"
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
    "inconclusive": (
        "These clips do not tell whether the model uses motion or appearance.",
        "The evidence is not strong enough for a verdict:",
    ),
}


def _change(before: float | None, after: float | None, drop: float | None) -> str:
    """'fell from A to B: a drop of C' or 'rose from A to B: a rise of C', by the sign."""
    if not (finite(before) and finite(after) and finite(drop)):
        return "could not be compared"
    assert before is not None and after is not None and drop is not None
    verb, noun = ("fell", "drop") if drop >= 0 else ("rose", "rise")
    return (
        f"{verb} from {num('overall.target_probability', before)} to "
        f"{num('overall.frozen_probability', after)} on average: a {noun} of "
        f"{num('overall.temporal_sensitivity.freeze', abs(drop))}"
    )


def _evidence(evidence: Mapping[str, Any], meaning: str) -> str:
    """The verdict's meaning, its reason, and the numbers behind it."""
    low, high = evidence.get("interval") or [None, None]
    share = num("verdict.relative_drop", evidence.get("relative_drop"), "pct")
    return (
        f"<p>{meaning} {esc(evidence.get('reason', ''))}. Share of the confidence lost per "
        f"clip: {share} on average over {num('verdict.clips', evidence.get('clips'), 'int')} "
        f"clips ({num('verdict.confidence', evidence.get('confidence'), 'pct')} interval "
        f"{num('verdict.interval_low', low, 'pct')} to "
        f"{num('verdict.interval_high', high, 'pct')}).</p>"
    )


def _motion_or_appearance(summary: Mapping[str, Any]) -> list[str]:
    overall = summary["overall"]
    temporal = overall["temporal_sensitivity"]
    parts = ['<div class="card" id="motion"><h3>Motion or appearance?</h3>']
    evidence = summary.get("verdict") or {}
    verdict = evidence.get("verdict")
    if verdict in _VERDICTS:
        headline, meaning = _VERDICTS[verdict]
        parts.append(f'<p class="verdict {verdict}" data-verdict="{verdict}">{headline}</p>')
    p = overall["target_probability"]
    if "freeze" in temporal:
        drop = temporal["freeze"]
        after = p - drop if finite(p) and finite(drop) else None
        parts.append(
            "<p>When each clip was frozen into a still picture (its first frame shown "
            f"throughout), the model's probability for the explained class "
            f"{_change(p, after, drop)}."
        )
        if "shuffle" in temporal:
            shuffled = temporal["shuffle"]
            word = "rose" if finite(shuffled) and shuffled < 0 else "fell"
            size = abs(shuffled) if finite(shuffled) else shuffled
            parts.append(
                f" With the frames shuffled into a random order it {word} by "
                f"{num('overall.temporal_sensitivity.shuffle', size)}."
            )
        parts.append("</p>")
        if verdict in _VERDICTS:
            parts.append(_evidence(evidence, _VERDICTS[verdict][1]))
    elif "shuffle" in temporal:
        parts.append(
            "<p>With the frames shuffled into a random order, the model's probability for the "
            "explained class fell by "
            f"{num('overall.temporal_sensitivity.shuffle', temporal['shuffle'])} on average.</p>"
        )
    else:
        parts.append("<p>Temporal sensitivity was not measured in this run.</p>")
    for name, m in overall["methods"].items():
        bias = m["spatial_bias"]
        if bias is None:
            continue
        parts.append(
            f"<p>Spatial bias of the <b>{esc(name)}</b> explanation: "
            f"{num(f'overall.methods.{name}.spatial_bias', bias)}: about "
            f"{num(f'overall.methods.{name}.spatial_bias_pct', bias, 'pct')} of the relevance "
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
            parts.append(f"<p><b>{esc(name)}</b> gave no relevance to compare frames.</p>")
            continue
        start, stop = core
        key = f"overall.methods.{name}"
        where = (
            f"frame {num(key + '.core_start', start + 1, 'int')}"
            if stop - start == 1
            else f"frames {num(key + '.core_start', start + 1, 'int')} to "
            f"{num(key + '.core_stop', stop, 'int')}"
        )
        spread = stop - start >= 0.4 * t
        lead = (
            f"<p>According to <b>{esc(name)}</b>, the relevance is spread over much of the clip: "
            f"it takes {where} of {t} to hold half of it, so no short moment stands out. "
            if spread
            else f"<p>According to <b>{esc(name)}</b>, {where} of {t} hold half of the relevance. "
        )
        parts.append(
            lead + f"The most relevant single frame is frame "
            f"{num(key + '.peak_frame', peak + 1, 'int')} with "
            f"{num(key + '.peak_share', curve[peak], 'pct')} of it.</p>"
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
            f"<p><b>{esc(name)}</b>: {num(f'overall.methods.{name}.relevance_mass', mass, 'pct')}"
            " of the positive relevance lies on the object that decides the label (the data "
            "set's ground-truth mask).</p>"
        )
    parts.append("</div>")
    return parts


# --------------------------------------------------------------------------- for experts
