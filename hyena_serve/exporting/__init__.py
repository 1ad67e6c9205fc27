"""ONNX export of hyena_serve models: the hyena::FFTConv node and its function bodies,
the model export with a built-in parity check."""

from hyena_serve.exporting.fftconv_onnx import (
    attach_functions,
    build_function,
    register_schema,
    standalone_model,
    translation_table,
)

__all__ = ["attach_functions", "build_function", "register_schema", "standalone_model", "translation_table"]
