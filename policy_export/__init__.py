"""Export of trained LARA policies to ONNX and TensorRT, with parity checks."""
