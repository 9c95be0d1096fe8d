#!/usr/bin/env bash
# `make run`: render the configuration and run Orthanc with the CBMIR plugin in the foreground.
# Environment: CBMIR_HOME (default <checkout>/.cbmir-home), CBMIR_HTTP_PORT (8042),
# CBMIR_DICOM_PORT (4242), CBMIR_USER (cbmir), CBMIR_PASSWORD (random, kept in CBMIR_HOME).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$repo/.venv/bin/python"
site="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
info="$("$py" "$repo/scripts/render_config.py")"
field() { "$py" -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$info" "$1"; }
config="$(field config)"; port="$(field http_port)"; user="$(field user)"; password="$(field password)"
base="http://localhost:$port"
cat <<MSG
Orthanc CBMIR
  Orthanc Explorer  $base/app/explorer.html
  OHIF viewer       $base/ohif/
  CBMIR status      $base/cbmir/status
  DICOM (C-STORE)   AET $(field aet), port $(field dicom_port)
  Login             $user / $password   (kept in $(field home)/credentials.json)
  Configuration     $config
Ctrl-C stops Orthanc.
MSG
export PYTHONPATH="$repo/plugin:$site${PYTHONPATH:+:$PYTHONPATH}"
cd "$(field home)"
# exec: Orthanc itself receives SIGTERM/SIGINT and shuts down cleanly.
exec /usr/sbin/Orthanc "$config"
