"""Training, evaluation and ONNX export of the CBMIR retrieval network (needs torch)."""
