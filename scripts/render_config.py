#!/usr/bin/env python3
"""Render orthanc.json into $CBMIR_HOME/orthanc.json (see cbmir.tools.orthanc_config)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugin"))
from cbmir.tools.orthanc_config import main  # noqa: E402

raise SystemExit(main())
