"""What the base install (`pip install lara-g1`, the robot PC) must neither hold nor import."""

NOT_IN_BASE = ("torch", "transformers", "onnx", "onnxruntime", "onnxscript", "mujoco", "av", "pyarrow", "safetensors")
