"""Which decision-threshold rule, chosen on a run's few validation people, judges new people best?

    .venv/bin/python bench/recipe_sweep/thresholds.py [bench/recipe_sweep/videos-2026-11-27-thresholds.jsonl]

Reads ``videos.jsonl`` from ``sweep.py`` (each run's last-epoch mean fake probability per validation,
test and scored video), chooses a threshold on each run's validation videos by each rule, applies it
to the scored people's videos and prints, per export, how many real videos each rule calls FAKE,
how many fakes it catches and its balanced accuracy. ``median midpoint`` is the pipeline's rule
(``realness_tasks.metrics.choose_threshold``, which the pipeline applies to its verdict rule's video
scores, here to the mean per video); ``Youden's J`` was the pipeline's rule until 2026-11-27.
Results: docs/training.md, "Decision threshold".
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT)]

from realness_tasks.metrics import choose_threshold, log_odds, roc_curve  # noqa: E402

DEFAULT = Path(__file__).resolve().parent / "videos-2026-11-27-thresholds.jsonl"


def youden(labels: np.ndarray, scores: np.ndarray) -> float:
    """The cut maximising TPR - FPR, halfway to the next lower score (the pipeline's rule until 2026-11-27)."""
    fpr, tpr, thresholds = roc_curve(labels, scores)
    best = int(np.argmax(tpr[1:] - fpr[1:])) + 1
    below = thresholds[best + 1] if best + 1 < len(thresholds) else 0.0
    return float((thresholds[best] + below) / 2)


def mean_midpoint(labels: np.ndarray, scores: np.ndarray) -> float:
    middle = (log_odds(scores[labels == 0]).mean() + log_odds(scores[labels == 1]).mean()) / 2
    return float(1 / (1 + np.exp(-middle)))


def equal_error(labels: np.ndarray, scores: np.ndarray) -> float:
    def gap(t: float) -> float:
        return abs(((scores >= t) & (labels == 0)).sum() / (labels == 0).sum()
                   - ((scores < t) & (labels == 1)).sum() / (labels == 1).sum())
    return float(min(np.unique(scores), key=gap))


RULES = {"Youden's J": youden, "median midpoint": choose_threshold, "mean midpoint": mean_midpoint,
         "equal error": equal_error, "fixed 0.5": lambda labels, scores: 0.5}


def main(path: Path) -> None:
    by_export: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for line in path.read_text().splitlines():
        run = json.loads(line)
        val_labels, val_scores = np.array(run["val"]["label"]), np.array(run["val"]["p"])
        labels, scores = np.array(run["score"]["label"]), np.array(run["score"]["p"])
        for name, rule in RULES.items():
            threshold = rule(val_labels, val_scores)
            real_fake = int(((scores >= threshold) & (labels == 0)).sum())
            caught = int(((scores >= threshold) & (labels == 1)).sum())
            balanced = ((1 - real_fake / (labels == 0).sum()) + caught / (labels == 1).sum()) / 2
            by_export[run["export"]][name].append((threshold, real_fake, caught, balanced))
    for export, rules in by_export.items():
        runs = len(next(iter(rules.values())))
        print(f"{export}: {runs} runs; scored videos: {int((labels == 0).sum())} real, {int((labels == 1).sum())} fake")
        for name, rows in rules.items():
            a = np.array(rows)
            print(f"  {name:16s} threshold median {np.median(a[:, 0]):.3f} ({a[:, 0].min():.3f}-{a[:, 0].max():.3f}); "
                  f"real called FAKE {a[:, 1].mean():.1f} (worst {a[:, 1].max():.0f}); "
                  f"fakes caught {a[:, 2].mean():.1f} (fewest {a[:, 2].min():.0f}); "
                  f"balanced accuracy {a[:, 3].mean():.3f} (worst {a[:, 3].min():.3f})")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT)
