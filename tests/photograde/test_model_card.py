"""The model card's leave-one-source-out section, from ``cv vision --by-source``'s loso.json or
from ``scripts/loso-served --json`` (with the device crop column)."""

from __future__ import annotations

from photograde.model_card import _loso


def _scores(auc: float, bal: float, n: int = 78) -> dict:
    return {"roc_auc": auc, "balanced_accuracy": bal, "n": n}


def _loso_json(crop: bool) -> dict:
    split = {"train_sources": ["shop"], "probe": _scores(0.93, 0.88),
             "finetune": _scores(0.94, 0.89), "served": _scores(0.95, 0.90)}
    if crop:
        split["served_crop"] = _scores(0.96, 0.91)
    return {"train_config": {"img_size": 224, "epochs": 5, "freeze_stages": 3},
            "extra_manifests": ["synth.csv"], "trained_on": ["synth-crops/mixed.csv"],
            "splits": {"web": split}}


def test_the_loso_table_has_a_crop_column_only_when_measured():
    plain, cropped = _loso(_loso_json(False)), _loso(_loso_json(True))
    assert plain[-1] == ("| web (78 photos) | shop | 0.930 / 0.880 | 0.940 / 0.890 | n/a | n/a "
                         "| 0.950 / 0.900 |")
    assert "device crop" not in "\n".join(plain) and "`synth.csv`" in plain[0]
    assert cropped[-1].endswith("| 0.950 / 0.900 | 0.960 / 0.910 |")
    assert cropped[2].endswith("| as served | on the device crop |")
    assert cropped[3].count("|---") == 8 and "`synth-crops/mixed.csv`" in cropped[0]
    assert _loso(None) == ["Not measured for this release."]
