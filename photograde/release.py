"""``photograde train release``: the recipe of the shipped model, one command, seeded.

Steps (each one is skipped when its output is already there, so an interrupted release goes on
where it stopped; delete a step's folder under ``--out`` to redo it):

1. synthetic devices: training (``--devices``, ``--seed``), calibration for the tabular and
   fusion models (``--calib-devices``, seed + 1; never seen by the vision model) and the
   held-out test set (``--test-devices``, ``--test-seed``);
2. the real front photos (``--real``: a folder with ``intact/`` and ``cracked/`` sub-folders, or
   a manifest) as a screen-only manifest with coarse labels (intact = not cracked) and sources;
3. the condition model on the synthetic fronts and backs and the real fronts together; with
   ``--localiser RUN`` (a ``train localiser`` run), on those photos and on the localiser's
   crops of their ``--crop-views`` photos (``--crop-long-side`` pixels; ``data/*-crops``,
   ``scripts/crop-manifest --with-whole``), and the bundle grades the crops of those views
   (the localiser exported with it, int8): the fusion model is then fitted, and int8 judged,
   on the crops; ``--serve whole`` keeps the training on photos and crops but ships a
   whole-photo bundle (no localiser at serving; fusion and int8 on the whole photos);
4. the tabular and fusion models on the calibration devices (the tabular one on the facts
   only: step 7 replaces it);
5. the bundle (fp32 and int8, int8 judged on the held-out synthetic set), then the photo check
   (``train photocheck``): a frozen ImageNet backbone and logistic heads (phone or not, front
   or back, and the cracked-screen probe blended into the served screen probabilities) fitted
   on the real photos the condition model trained on (never its validation split) and added
   to the bundle, with its leave-one-source-out and held-out figures; it comes before the
   evaluation because the probe is part of the served screen;
6. ``evaluate bundle`` on the held-out synthetic set (fp32 and int8) and on the real photos
   (with a flawless synthetic back: the grades a user would see); the abstention threshold
   (``min_confidence``) written into the bundle: the lowest grade confidence whose decided
   grades reach ``--target-accuracy`` on the held-out synthetic set; with
   ``--reference-from-test`` only, the reference grade distribution (``reference``: the
   predicted grades on that set), which the service's drift watch compares the served grades
   with. Off by default: the synthetic set's grade mix (two thirds broken) is not a
   marketplace's, so the drift alert would fire on real traffic from the first day; a bundle
   without a reference takes its first served grades as one, and an operator sets a
   production reference with ``evaluate bundle --set-reference`` on a ``dataset export``;
7. the return-risk model on evidence (``train return-risk``): two synthetic marketplace
   histories (``--history-devices``, seed + 2; ``--history-test-devices``, test seed + 1)
   graded through the bundle; trained on the first, scored on the second, installed;
8. ``MODEL_CARD.md`` and ``release.json`` beside the bundle (the card includes the
   leave-one-source-out table when ``OUT/loso/loso.json`` exists, from ``photograde cv vision
   --by-source --out OUT/loso``); with ``--ship DIR``, the bundle, the fp16 weights for
   fine-tuning and the card copied to ``DIR`` (``models/photograde-base``).

Defaults are the CPU recipe of ``photograde-base`` (2 cores, about an hour and a half); the GPU
recipe is the same command with a larger ``--img-size``, more ``--devices`` and ``--epochs``
(docs/training.md, "The shipped model").
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from photograde.bundle_settings import ReleaseError, predicted_counts, set_abstention, set_reference

log = logging.getLogger("photograde.release")

REAL_MAPPING = {"intact": "flawless|light_scratches|heavy_scratches", "cracked": "cracked"}


@dataclass
class ReleaseConfig:
    """The recipe; the defaults made ``models/photograde-base``."""

    out: str = "runs/release"
    real: str | None = None
    seed: int = 100
    devices: int = 3000
    calib_devices: int = 600
    test_devices: int = 2000
    test_seed: int = 999
    img_size: int = 224
    epochs: int = 6
    freeze_stages: int = 1
    device: str = "auto"
    ship: str | None = None
    name: str = "photograde-base"
    synth_size: int = 1500
    target_accuracy: float = 0.95
    reference_from_test: bool = False
    history_devices: int = 3000
    history_test_devices: int = 2000
    localiser: str | None = None  # None: whole photos (photograde-base)
    crop_views: str = "front"
    crop_long_side: int = 224
    serve: str = "crop"  # with --localiser: "crop", or "whole" (trained on both, no localiser)
    photocheck_negatives: int = 400
    photocheck_held_out: int = 300
    progress: bool = True


def _synth(cfg: ReleaseConfig, name: str, n: int, seed: int, mix: str = "training") -> Path:
    from training.synth.generate import default_workers, generate

    out = Path(cfg.out) / "data" / name
    if (out / "manifest.csv").is_file():
        log.info("release: %s already generated", out)
        return out / "manifest.csv"
    log.info("release: %d synthetic devices (seed %d) -> %s", n, seed, out)
    return generate(n, out, seed=seed, size=cfg.synth_size, workers=default_workers(),
                    progress=cfg.progress, mix=mix)


def _real(cfg: ReleaseConfig) -> Path | None:
    from training.import_folder import import_folder

    if cfg.real is None:
        return None
    src = Path(cfg.real)
    if src.is_file():
        return src
    if not src.is_dir():
        raise ReleaseError(f"--real {src}: neither a folder of labelled photos nor a manifest")
    out = Path(cfg.out) / "data" / "real.csv"
    if not out.is_file():
        import_folder(src, out, REAL_MAPPING, "screen", source_from_names=True)
    return out


def _cropped(cfg: ReleaseConfig, manifest: Path, name: str) -> tuple[Path, Path]:
    """The localiser's crops of ``manifest``'s photos of ``--crop-views`` (the others whole)
    under ``data/NAME-crops``: (the crops' manifest, ``mixed.csv``: whole photos and crops)."""
    from training.crop_bundle import parse_views
    from training.crop_data import crop_manifest
    from training.synth.generate import default_workers

    assert cfg.localiser is not None
    out = Path(cfg.out) / "data" / f"{name}-crops"
    if not (out / "crops.json").is_file():
        log.info("release: crops of %s -> %s", manifest, out)
        crop_manifest(manifest, cfg.localiser, out, long_side=cfg.crop_long_side,
                      workers=default_workers(), progress=cfg.progress, with_whole=True,
                      views=parse_views(cfg.crop_views))
    return out / "manifest.csv", out / "mixed.csv"


def _check_crop(cfg: ReleaseConfig) -> None:
    """Refuse a bad ``--localiser`` or ``--crop-views`` before any work, naming it."""
    from training.crop_bundle import parse_views
    from vision.localise import Localiser, LocaliserError

    if cfg.localiser is None:
        return
    if cfg.serve not in ("crop", "whole"):
        raise ReleaseError(f"--serve {cfg.serve}: expected crop or whole")
    if not 32 <= cfg.crop_long_side <= 4096:
        raise ReleaseError(f"--crop-long-side {cfg.crop_long_side}: expected 32 to 4096 px")
    try:
        parse_views(cfg.crop_views)
    except ValueError as exc:
        raise ReleaseError(f"--crop-views {cfg.crop_views}: {exc}") from None
    try:
        Localiser(cfg.localiser)
    except LocaliserError as exc:
        raise ReleaseError(f"--localiser: {exc}") from None


def _vision_data(cfg: ReleaseConfig, train: Path, calib: Path, test: Path, real: Path | None
                 ) -> tuple[list[Path], Path, Path]:
    """What the condition model trains on, and what it sees of the calibration and held-out
    devices: their photos; with ``--localiser``, the whole photos and their crops for training
    (``mixed.csv``), the crops (of ``--crop-views``) for the others, as the bundle serves
    (``--serve whole``: their whole photos)."""
    if not cfg.localiser:
        return [train, *([real] if real else [])], calib, test
    whole = cfg.serve == "whole"
    crops = {name: _cropped(cfg, m, name) for name, m in
             (("train", train), ("calib", calib), ("test", test), ("real", real))
             if m and not (whole and name in ("calib", "test"))}
    mixed = [crops[n][1] for n in ("train", "real") if n in crops]
    return (mixed, calib, test) if whole else (mixed, crops["calib"][0], crops["test"][0])


def _train_vision(cfg: ReleaseConfig, manifests: list[Path]) -> Path:
    from training.train_config import TrainConfig
    from training.vision_train import train_vision

    run = Path(cfg.out) / "vision"
    if (run / "best.pt").is_file() and (run / "summary.json").is_file():
        log.info("release: vision model already trained in %s", run)
        return run
    train_vision(TrainConfig(manifests=[str(m) for m in manifests], out=str(run),
                             img_size=cfg.img_size, epochs=cfg.epochs,
                             freeze_stages=cfg.freeze_stages, seed=0, device=cfg.device,
                             resume=(run / "last.pt").is_file(), progress=cfg.progress))
    return run


def _train_rest(cfg: ReleaseConfig, vision: Path, calib: Path, seen: Path
                ) -> tuple[Path, Path]:
    """Tabular on the calibration devices' facts; fusion on what the vision model sees of
    them (``seen``: their photos, or their crops when the release crops)."""
    from training.fusion_train import train_fusion
    from training.tabular_train import train_tabular

    tabular, fusion = Path(cfg.out) / "tabular", Path(cfg.out) / "fusion"
    if not (tabular / "tabular.json").is_file():
        train_tabular([calib], tabular, seed=cfg.seed)
    if not (fusion / "fusion.json").is_file():
        train_fusion([str(seen)], vision, tabular, fusion)
    return tabular, fusion


def _export(cfg: ReleaseConfig, vision: Path, tabular: Path, fusion: Path, test: Path) -> Path:
    """The bundle, fp32 and int8 (``test``: where int8 is judged), with the localiser
    (quantised too) and its crop settings when the release crops."""
    from fusion.bundle import load_manifest
    from training.crop_bundle import add_localiser, parse_views
    from training.export import export_bundle

    bundle = Path(cfg.out) / "bundle"
    if not (bundle / "manifest.json").is_file():
        export_bundle(vision, tabular, fusion, bundle, int8=True, int8_eval=test,
                      model_name=cfg.name)
    if cfg.localiser and cfg.serve == "crop" and \
            load_manifest(bundle, verify_hashes=False).crop is None:
        add_localiser(bundle, Path(cfg.localiser), parse_views(cfg.crop_views),
                      cfg.crop_long_side, int8=True)
    return bundle


def _photocheck(cfg: ReleaseConfig, bundle: Path, real: Path | None, train: Path,
                test: Path) -> dict[str, Any]:
    from fusion.bundle import load_manifest
    from training.photocheck_cli import train_photocheck

    done = load_manifest(bundle, verify_hashes=False).photocheck
    if done is not None:
        log.info("release: photo check already in %s", bundle)
        return done.metrics
    return train_photocheck(bundle, real, train, test, seed=cfg.seed, progress=cfg.progress,
                            n_negative=cfg.photocheck_negatives,
                            n_held=cfg.photocheck_held_out)


def _flawless_back(test: Path) -> Path:
    from training.manifest import load_manifest

    for row in load_manifest(test).rows:
        if row.exact_condition("shell") == "flawless" and row.back_path is not None:
            return row.back_path
    raise ReleaseError(f"{test}: no flawless synthetic back to pair with the real fronts")


def _real_split(cfg: ReleaseConfig, real: Path, vision: Path) -> tuple[Path, Path]:
    """The real photos the vision run trained on and those it kept for validation (never a
    gradient step), as two manifests: the photo check learns from the first only, so that the
    second gives the honest real-photo figure of the served model."""
    from training.manifest import load_manifest, write_manifest
    from training.vision_run import RunDir, validation_devices
    from vision.conditions import format_condition_set

    manifest = load_manifest(real)
    keep = validation_devices(vision, RunDir(vision).read_config(), manifest)
    columns = ("device_id", "front_path", "screen_condition", "source")
    out = []
    for name, held in (("real-training", False), ("real-validation", True)):
        rows = [{"device_id": r.device_id, "front_path": str(r.front_path),
                 "screen_condition": format_condition_set(r.screen, "screen") if r.screen
                 else "", "source": r.source or ""}
                for r in manifest.rows if (r.device_id in keep) == held]
        out.append(write_manifest(Path(cfg.out) / "data" / f"{name}.csv", rows, columns))
    return out[0], out[1]


def _evaluate(cfg: ReleaseConfig, bundle: Path, test: Path, real: Path | None
              ) -> dict[str, Any]:
    from photograde.bundle_eval import evaluate_bundle
    from training.vision_eval import json_safe

    out = Path(cfg.out) / "eval"
    done = out / "evaluation.json"
    if done.is_file():
        log.info("release: bundle already evaluated (%s)", done)
        return json.loads(done.read_text())
    result = {"synthetic": evaluate_bundle(bundle, [test], out / "synthetic",
                                           progress=cfg.progress),
              "synthetic_int8": evaluate_bundle(bundle, [test], out / "synthetic-int8",
                                                int8=True, worst=0, progress=cfg.progress)}
    if real is not None:
        result["real"] = evaluate_bundle(bundle, [real], out / "real",
                                         back=_flawless_back(test), progress=cfg.progress)
        result["real_int8"] = evaluate_bundle(bundle, [real], out / "real-int8", int8=True,
                                              worst=0, progress=cfg.progress)
    result = json_safe(result)
    done.write_text(json.dumps(result, indent=2))
    return result


def _precision(bundle: Path, evaluation: dict[str, Any], real: Path | None
               ) -> dict[str, Any] | None:
    """int8 against fp32 on the held-out real fronts, recorded in the bundle (what the
    service's ``precision=auto`` reads); returns the precision it now serves, and why."""
    from photograde.precision_eval import real_screen_change, record_real_screen

    if real is None or "real_int8" not in evaluation:
        return None
    change = real_screen_change(evaluation["real"]["screen"], evaluation["real_int8"]["screen"],
                                str(real))
    return record_real_screen(bundle, change).model_dump()


def _summary(manifest: Path | None) -> dict[str, Any] | None:
    from training.manifest import load_manifest

    return load_manifest(manifest).summary() if manifest else None


def _training_minutes(vision: Path) -> float:
    """Wall-clock minutes of the vision run's epochs (its log), wherever it was trained."""
    from training.vision_run import RunDir

    return round(sum(e.get("epoch_s", 0) for e in RunDir(vision).read_log()) / 60, 1)


def _return_risk(cfg: ReleaseConfig, bundle: Path) -> dict[str, Any]:
    """The return-risk model on what the bundle sees in a marketplace history (seed + 2),
    scored on another (test seed + 1), installed into the bundle."""
    from photograde.return_risk import train_return_risk

    meta = json.loads((bundle / "tabular.json").read_text())
    if meta.get("evidence"):
        log.info("release: return-risk model on evidence already in %s", bundle)
        return dict(meta["metrics"])
    history = _synth(cfg, "history-train", cfg.history_devices, cfg.seed + 2, "marketplace")
    test = _synth(cfg, "history-test", cfg.history_test_devices, cfg.test_seed + 1,
                  "marketplace")
    return dict(train_return_risk(bundle, [history], Path(cfg.out) / "return-risk", test=test,
                                  install=True, seed=cfg.seed, progress=cfg.progress)["metrics"])


def ship(bundle: Path, vision_run: Path, out: Path) -> Path:
    """Copy the bundle, its card and the fp16 fine-tuning weights to ``out``."""
    from training.vision_run import save_fp16_weights

    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(bundle, out)
    save_fp16_weights(vision_run, out)
    return out


def release(cfg: ReleaseConfig) -> dict[str, Any]:
    """Run the whole recipe; returns what ``release.json`` records."""
    from photograde.model_card import write_model_card
    from training.vision_eval import json_safe

    start = time.perf_counter()
    _check_crop(cfg)
    train = _synth(cfg, "synth-train", cfg.devices, cfg.seed)
    calib = _synth(cfg, "synth-calib", cfg.calib_devices, cfg.seed + 1)
    test = _synth(cfg, "synth-test", cfg.test_devices, cfg.test_seed)
    real = _real(cfg)
    training, seen_calib, seen_test = _vision_data(cfg, train, calib, test, real)
    vision = _train_vision(cfg, training)
    tabular, fusion = _train_rest(cfg, vision, calib, seen_calib)
    bundle = _export(cfg, vision, tabular, fusion, seen_test)
    real_train, real_val = _real_split(cfg, real, vision) if real else (None, None)
    # before the evaluation: its cracked-screen probe is part of the served screen
    photocheck = _photocheck(cfg, bundle, real_train, train, test)
    evaluation = _evaluate(cfg, bundle, test, real_val)
    abstention = set_abstention(bundle, evaluation, cfg.target_accuracy)
    precision = _precision(bundle, evaluation, real_val)
    predicted = predicted_counts(evaluation["synthetic"].get("grades"))
    reference = (set_reference(bundle, predicted, "synthetic held-out set")
                 if cfg.reference_from_test else None)
    return_risk = _return_risk(cfg, bundle)
    record = {"recipe": asdict(cfg), "data": {"synthetic_train": str(train),
                                              "synthetic_calibration": str(calib),
                                              "synthetic_test": str(test),
                                              "real": str(real) if real else None,
                                              "real_summary": _summary(real),
                                              "real_training": str(real_train) if real_train
                                              else None,
                                              "real_validation": str(real_val) if real_val
                                              else None,
                                              "vision_training": [str(m) for m in training]},
              "vision_run": str(vision), "bundle": str(bundle),
              "minutes": round((time.perf_counter() - start) / 60, 1),
              "vision_training_minutes": _training_minutes(vision),
              "abstention": abstention, "reference": reference,
              "synthetic_predicted_grades": predicted, "evaluation": evaluation,
              "precision": precision,
              "photocheck": photocheck, "return_risk": return_risk}
    (Path(cfg.out) / "release.json").write_text(json.dumps(json_safe(record), indent=2,
                                                           default=str))
    loso = Path(cfg.out) / "loso" / "loso.json"  # photograde cv vision --by-source --out ...
    write_model_card(bundle, record, json.loads(loso.read_text()) if loso.is_file() else None)
    if cfg.ship:
        ship(bundle, vision, Path(cfg.ship))
        log.info("release: shipped to %s", cfg.ship)
    return record
