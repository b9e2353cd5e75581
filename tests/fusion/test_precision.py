"""The served precision: int8 only when every measured change is within half a point, and the
reason always says why."""

from __future__ import annotations

import pytest

from fusion.bundle import BundleError, Int8Info, RealScreenChange
from fusion.precision import choose_precision, int8_changes


def _int8(synthetic: dict[str, float] | None = None, real_auc: float | None = 0.999
          ) -> Int8Info:
    real = None if real_auc is None else RealScreenChange(
        evaluated_on="real.csv", photos=100, roc_auc_cracked_fp32=0.998,
        roc_auc_cracked_int8=real_auc, macro_f1_cracked_fp32=0.95, macro_f1_cracked_int8=0.948)
    return Int8Info(macro_f1_change_points=synthetic if synthetic is not None
                    else {"screen": 0.1, "shell": -0.36}, real_screen=real)


def test_auto_serves_int8_when_every_measured_change_is_within_half_a_point():
    choice = choose_precision(_int8(), "auto")
    assert choice.precision == "int8"
    assert choice.int8_change_points == {"synthetic macro-F1 screen": 0.1,
                                         "synthetic macro-F1 shell": -0.36,
                                         "real-screen ROC-AUC": 0.1, "real-screen macro-F1": -0.2}
    assert "within 0.5" in choice.reason and "real-screen ROC-AUC +0.10" in choice.reason


@pytest.mark.parametrize(("info", "why"), [
    (_int8({"screen": -0.8, "shell": 0.0}), "synthetic macro-F1 screen -0.80 points"),
    (_int8(real_auc=0.99), "real-screen ROC-AUC -0.80 points"),
    (_int8(real_auc=None), "no real-screen figures measured"),
    (_int8({}), "no synthetic macro-F1"),
    (None, "no int8 model"),
])
def test_auto_keeps_fp32_and_says_why(info, why):
    choice = choose_precision(info, "auto")
    assert choice.precision == "fp32" and why in choice.reason, choice.reason


def test_an_explicit_precision_is_served_with_its_measured_cost():
    assert choose_precision(_int8(real_auc=0.9), "fp32").precision == "fp32"
    forced = choose_precision(_int8(real_auc=0.9), "int8")
    assert forced.precision == "int8" and "real-screen ROC-AUC -9.80" in forced.reason
    with pytest.raises(BundleError, match="no int8 model"):
        choose_precision(None, "int8", "b")
    assert int8_changes(_int8(real_auc=None)) == {"synthetic macro-F1 screen": 0.1,
                                                  "synthetic macro-F1 shell": -0.36}
