"""Orthanc CBMIR: content-based retrieval of brain MRI inside Orthanc.

Runtime package (numpy, onnxruntime, annoy, pydicom; never torch). One module per
concern: decode -> preprocess -> embed -> store / index -> routes.
"""
__version__ = "0.1.0"
