"""Serve: the command line, the HTTP API, storage and UI (ONNX Runtime only, never torch)."""
