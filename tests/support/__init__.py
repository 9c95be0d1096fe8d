"""Helpers shared by the test suites (real Orthanc server, test models, DICOM makers)."""
