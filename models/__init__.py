"""Model code: the fusion network, ONNX export into `triton_repo/`, and in-process references."""
