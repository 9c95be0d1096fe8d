"""The script Orthanc's Python plugin loads (`PythonScript` in orthanc.json).

Everything lives in the `cbmir` package (on PYTHONPATH); this file only wires it.
Do not rename it to orthanc.py: it would shadow the SDK module.
"""
import orthanc

import cbmir.service.wiring

cbmir.service.wiring.register(orthanc)
