"""Orthanc CBMIR: content-based retrieval of brain MRI inside Orthanc.

One package per job (docs/design.md):
  core     pixels -> model input -> vector: decode, limits, preprocess, embed. No Orthanc, no I/O
           beyond files; training (export/cbmir_train) imports only this.
  vectors  vectors at rest and the search over them: store (SQLite truth), index (Annoy cache),
           search (filters, grouping, percentiles).
  service  the Orthanc plugin: wiring, gateway to the SDK, config, engine, worker, follower, routes.
  tools    offline commands (`cbmir import|demo|embed|verify`), an optional extra: never loaded
           by the plugin.
The plugin runtime needs numpy, onnxruntime, annoy, pydicom and Pillow; never torch.
"""
__version__ = "0.1.0"
