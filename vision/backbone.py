"""The backbone's name (torch-free), so that options and configs can show the default without
importing timm; :mod:`vision.weights` resolves its weights."""

DEFAULT_BACKBONE = "tf_efficientnet_lite0"
