"""Export of trained LARA policies to ONNX and TensorRT, with parity checks."""

if __name__ != "lara_g1.policy_export":  # the repository folder policy_export/ imported as a top-level package
    raise ImportError(f"import lara_g1.policy_export, not {__name__}: policy_export/ is installed as lara_g1.policy_export")
