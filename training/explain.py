"""``photograde explain``: a class activation heatmap of one photo, from a trained run.

The photo goes through the serving transform (:func:`vision.preprocess.preprocess`); the CAM is
computed by the torch-free :mod:`vision.heatmap`, as serving does from ONNX outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.metrics import softmax
from training.vision_run import load_run
from vision.conditions import CONDITIONS
from vision.errors import PhotogradeError
from vision.heatmap import cam_from_features, damage_box, overlay_png
from vision.preprocess import open_image, preprocess


class ExplainError(PhotogradeError):
    """The photo, part or class to explain is not usable."""


@torch.no_grad()
def explain(run_dir: str | Path, image_path: str | Path, part: str, out_png: str | Path,
            class_name: str | None = None, *, alpha: float = 0.45, max_side: int = 768,
            threshold: float = 0.5) -> dict[str, Any]:
    """Write the CAM overlay of ``class_name`` (default: the predicted class) to ``out_png``.

    Returns ``{"part", "class", "probabilities" (calibrated), "box" (x0, y0, x1, y1 in 0..1 or
    None), "image", "out"}``.
    """
    if part not in CONDITIONS:
        raise ExplainError(f"unknown part {part!r}; expected one of {', '.join(CONDITIONS)}")
    classes = CONDITIONS[part]
    if class_name is not None and class_name not in classes:
        raise ExplainError(f"unknown {part} class {class_name!r}; expected one of "
                           f"{', '.join(classes)}")
    model, _, temps = load_run(run_dir)
    try:
        x = torch.from_numpy(preprocess(image_path, model.preprocess))[None]
    except OSError as e:  # a missing or unreadable --image
        raise ExplainError(str(e)) from e
    fmap = model.forward_features_map(x)
    if fmap.ndim != 4:
        raise ExplainError(f"backbone {model.backbone_name} has no spatial feature map "
                           f"(shape {tuple(fmap.shape)}): no CAM")
    screen, shell = model.heads_from_features(fmap)
    logits = (screen if part == "screen" else shell).float().numpy()
    probs = softmax(logits, temps[part])[0]
    index = int(probs.argmax()) if class_name is None else classes.index(class_name)
    cam = cam_from_features(fmap[0].float().numpy(),
                            model.head(part).weight.detach().float().numpy(), index)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    out_png.write_bytes(overlay_png(open_image(image_path, draft_size=max_side), cam, alpha,
                                    max_side))
    return {"part": part, "class": classes[index],
            "probabilities": {c: float(p) for c, p in zip(classes, probs, strict=True)},
            "box": damage_box(cam, threshold), "image": str(image_path), "out": str(out_png),
            "temperature": temps[part], "cam_shape": list(np.shape(cam))}
