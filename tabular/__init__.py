"""Tabular: the functional checklist schema, the return-risk model's features and its
ONNX runtime (training it is :mod:`training.tabular_train`)."""
