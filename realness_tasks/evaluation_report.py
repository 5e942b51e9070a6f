"""The evaluation report: the metrics as tables, the ROC plot and the segment localisation, written as
``evaluation.json``, ``roc.png`` and ``evaluation.html`` under ``reports/evaluations/`` (``docs/evaluation.md``)."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np

from realness_tasks.config import RealnessConfig
from realness_tasks.evaluation import SCORED_VERDICTS, EvaluationResult, Metrics
from realness_tasks.html_pages import STYLE, embedded_image, escaped
from realness_tasks.localisation import localisation_rows, summary
from realness_tasks.metrics import roc_curve
from realness_tasks.storage import open_store
from realness_tasks.verdicts import FAKE


def roc_png(result: EvaluationResult) -> bytes:
    """The ROC curve of the scored videos' p_fake, with the point the FAKE verdicts reach on it (Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scored = [v for v in result.videos if v.verdict in SCORED_VERDICTS]
    actual = np.array([v.label.label == FAKE for v in scored], dtype=int)
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    overall = result.overall
    if overall.auc is None:
        ax.text(0.5, 0.5, "no ROC curve: the scored videos\nneed both FAKE and REAL labels",
                ha="center", va="center", transform=ax.transAxes)
    else:
        fpr, tpr, _ = roc_curve(actual, np.array([v.p_fake for v in scored], dtype=np.float64))
        ax.plot(fpr, tpr, drawstyle="steps-post", label=f"videos by p_fake (AUC {overall.auc:.3f})")
        (tn, fp), (fn, tp) = overall.confusion
        ax.plot([fp / (fp + tn)], [tp / (tp + fn)], "o", color="#c0392b", label="FAKE verdicts")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set(xlabel="false-positive rate (REAL called FAKE)", ylabel="true-positive rate (FAKE caught)",
           title=f"ROC curve, {overall.scored} scored videos")
    ax.legend(loc="lower right")
    png = io.BytesIO()
    FigureCanvasAgg(fig).print_png(png)
    return png.getvalue()


def number(value: float | None) -> str:
    """A metric as the tables print it: three decimals, or n/a when it has none (an AUC without both classes)."""
    return "n/a" if value is None else f"{value:.3f}"


METRIC_COLUMNS = ("labelled", "scored", "auc", "auc_vs_all_real", "auc_vs_all_fake", "accuracy", "precision_fake",
                  "recall_fake", "f1_fake", "uncertain", "no_face", "error", "no_verdict")


AUC_LEGEND = ("auc: the group's fakes against the group's reals; auc_vs_all_real: the group's fakes against every "
              "scored real of the evaluation; auc_vs_all_fake: every scored fake of the evaluation against the "
              "group's reals (n/a: no such pair).")


def metrics_row(group: str, m: Metrics) -> dict[str, Any]:
    """One group's metrics as a flat row, for the printed and the HTML tables."""
    return {"group": group, **{column: getattr(m, column) for column in METRIC_COLUMNS}}


def html_table(rows: Sequence[dict[str, Any]], table_id: str) -> str:
    """Rows sharing their keys as an escaped HTML table headed by those keys; "(none)" when there are no rows."""
    if not rows:
        return "<p>(none)</p>"
    head = "".join(f"<th>{escaped(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{number(v) if isinstance(v, float) or v is None else escaped(v)}</td>"
                                    for v in row.values()) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def render(result: EvaluationResult, roc: bytes) -> str:
    """The evaluation as one self-contained HTML page (the ROC plot embedded, nothing fetched)."""
    overall = result.overall
    (tn, fp), (fn, tp) = overall.confusion
    by_label = [{"actual": label, **counts} for label, counts in overall.verdicts_by_label.items()]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Realness evaluation: {escaped(result.labels_file)}</title><style>{STYLE}</style></head><body>",
        "<h1>Realness evaluation</h1><dl>",
        f"<dt>labels</dt><dd>{escaped(result.labels_file)}</dd>",
        f"<dt>videos</dt><dd>{escaped(result.source_prefix or 'all')}</dd>",
        f"<dt>evaluated at</dt><dd>{escaped(result.evaluated_at.isoformat())}</dd>",
        "<dt>model versions</dt><dd>" + escaped(", ".join(f"{k} ({n})" for k, n in result.model_versions.items())
                                                or "none") + "</dd>",
        "</dl><p>Predicted FAKE = verdict FAKE; UNCERTAIN counts as not FAKE and is also counted on its own. "
        "NO_FACE, ERROR and labelled videos without a verdict have no prediction.</p>",
        "<h2>Metrics</h2>", html_table([metrics_row("all", overall)], "overall"),
        "<h2>Confusion matrix (scored videos)</h2>",
        html_table([{"actual": "REAL", "verdict not FAKE": tn, "verdict FAKE": fp},
                    {"actual": "FAKE", "verdict not FAKE": fn, "verdict FAKE": tp}], "confusion"),
        "<h2>Verdicts by label</h2>", html_table(by_label, "verdicts-by-label"),
        "<h2>ROC curve</h2>", embedded_image(roc, "image/png", "ROC curve of the scored videos"),
    ]
    if result.breakdown:
        parts.append(f"<p>{escaped(AUC_LEGEND)}</p>")
    for column, groups in result.breakdown.items():
        parts += [f"<h2>By {escaped(column)}</h2>",
                  html_table([metrics_row(value, m) for value, m in groups.items()], f"by-{escaped(column)}")]
    if result.localisation is not None:
        parts += ["<h2>Segment localisation</h2>", f"<p>{escaped(summary(result.localisation))}</p>",
                  html_table(localisation_rows(result.localisation), "localisation")]
    parts += [f"<h2>Ambiguous names ({len(result.ambiguous)})</h2>",
              html_table([{"name": a.name, "candidates": ", ".join(a.candidates)} for a in result.ambiguous],
                         "ambiguous"),
              f"<p>{result.unlabelled_verdicts} verdict(s) under the prefix have no label.</p>",
              "<h2>Videos</h2>",
              html_table([{"name": v.label.name, "label": v.label.label, "verdict": v.verdict, "p_fake": v.p_fake,
                           "source": v.source_uri} for v in result.videos], "videos"),
              "</body></html>"]
    return "\n".join(parts)


def evaluation_prefix(cfg: RealnessConfig, evaluated_at: datetime) -> str:
    """The folder of one evaluation's files, named by its time so that evaluations never overwrite each other."""
    return f"{cfg.reports_prefix}evaluations/{evaluated_at.strftime('%Y%m%dT%H%M%S.%fZ')}/"


def write_evaluation(cfg: RealnessConfig, result: EvaluationResult) -> str:
    """Store evaluation.json, roc.png and evaluation.html; returns the URI of their folder."""
    store = open_store(cfg.resolved_store_uri, cfg.s3)
    prefix = evaluation_prefix(cfg, result.evaluated_at)
    roc = roc_png(result)
    store.put_bytes(prefix + "evaluation.json", json.dumps(result.to_json(), indent=1).encode("utf-8"))
    store.put_bytes(prefix + "roc.png", roc)
    store.put_bytes(prefix + "evaluation.html", render(result, roc).encode("utf-8"))
    return store.uri_for(prefix)
