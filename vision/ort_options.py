"""ONNX Runtime session options shared by every model the service runs (the condition model,
the photo check's, the return-risk model, the localiser)."""

from __future__ import annotations

import onnxruntime as ort


def session_options(threads: int, spinning: bool = False) -> ort.SessionOptions:
    """Options for ``threads`` intra-op threads (0: ONNX Runtime's default). ``spinning`` off
    (the default): idle threads sleep instead of busy-waiting for the next operator, so they
    leave the cores to the photo-decoding threads (the service at 16 clients: 1.45x the
    throughput, benchmarks/floor.py)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    flag = "1" if spinning else "0"
    opts.add_session_config_entry("session.intra_op.allow_spinning", flag)
    opts.add_session_config_entry("session.inter_op.allow_spinning", flag)
    return opts
