"""The detector's fusion and calibration on synthetic scores whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from realness_tasks.detector import (CALIBRATED_THRESHOLD, Detector, calibrate, choose_fusion_weight, fit_temperature,
                                     reliability, sigmoid)
from realness_tasks.foundation import LinearHead
from realness_tasks.metrics import log_odds


def test_temperature_scaling_recovers_the_temperature_that_generated_the_labels():
    rng = np.random.default_rng(0)
    fused = rng.normal(0.0, 4.0, 20_000)
    raw_threshold = 0.3                                   # log-odds -0.847: the generating offset
    labels = (rng.random(fused.size) < calibrate(fused, raw_threshold, 2.5)).astype(int)
    assert fit_temperature(fused, labels, raw_threshold) == pytest.approx(2.5, rel=0.05)


def test_a_perfectly_separated_validation_split_does_not_make_probabilities_certain():
    fused = np.r_[np.linspace(-8, -1, 40), np.linspace(1, 8, 40)]     # every real below, every fake above
    labels = np.r_[np.zeros(40), np.ones(40)]
    temperature = fit_temperature(fused, labels, 0.5)
    assert temperature > 0.5                     # hard 0/1 targets would drive it to the 0.05 bound
    assert calibrate(np.array([4.0]), 0.5, temperature)[0] < 0.99      # a typical fake: likely, not certain


def test_the_calibrated_threshold_is_the_raw_threshold_and_ranks_are_kept():
    fused = np.array([-3.0, -1.0, 0.2, 2.0])
    raw_threshold = float(sigmoid(0.2))
    p = calibrate(fused, raw_threshold, 1.7)
    assert p[2] == pytest.approx(CALIBRATED_THRESHOLD)
    assert np.all(np.diff(p) > 0)


def test_calibrated_probabilities_have_a_small_expected_calibration_error_and_overconfident_ones_do_not():
    rng = np.random.default_rng(1)
    p = rng.random(50_000)
    labels = (rng.random(p.size) < p).astype(int)
    assert reliability(labels, p)["ece"] < 0.01
    overconfident = np.where(p > 0.5, 0.99, 0.01)          # the same ranking, wrong probabilities
    assert reliability(labels, overconfident)["ece"] > 0.2
    table = reliability(np.array([0, 1, 1, 1]), np.array([0.05, 0.95, 0.95, 0.55]), bins=10)
    assert table["count"] == 4 and [b["count"] for b in table["bins"]] == [1, 1, 2]
    # bins: 0.05 (real) -> |0.05 - 0| ; 0.55 (fake) -> |0.55 - 1| ; 0.95 x2 (fake) -> |0.95 - 1|
    assert table["ece"] == pytest.approx((0.05 + 0.45 + 2 * 0.05) / 4)


def test_the_fusion_weight_is_the_best_on_validation_with_ties_going_to_the_foundation_head():
    assert choose_fusion_weight(lambda w: 1 - abs(w - 0.3), grid=(0.0, 0.3, 0.6, 1.0))[0] == 0.3
    assert choose_fusion_weight(lambda w: 0.9, grid=(0.0, 0.5, 1.0))[0] == 0.0
    assert choose_fusion_weight(lambda w: float("nan") if w < 1 else 0.7, grid=(0.0, 1.0))[0] == 1.0


def test_fused_scores_mix_both_branches_and_a_fusing_detector_needs_features():
    head = LinearHead(np.zeros(512), 0.0, 1.0, "enc")
    p_efficientnet = np.array([0.1, 0.9])
    head_logits = np.array([2.0, -2.0])
    alone = Detector(1.0, 2.0, head, 4.0, 0.5, 1.0)
    assert not alone.needs_features
    np.testing.assert_allclose(alone.fused(p_efficientnet, None), log_odds(p_efficientnet) / 2.0)
    half = Detector(0.5, 2.0, head, 4.0, 0.5, 1.0)
    np.testing.assert_allclose(half.fused(p_efficientnet, head_logits),
                               0.5 * log_odds(p_efficientnet) / 2.0 + 0.5 * head_logits / 4.0)
    with pytest.raises(ValueError, match="foundation features"):
        half.fused(p_efficientnet, None)
    again = Detector.from_json(half.to_json())
    np.testing.assert_allclose(again.fused(p_efficientnet, head_logits), half.fused(p_efficientnet, head_logits))
