#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages the project needs, only those missing.
# Usage: scripts/install-system.sh [run|cluster|test]
#   "cluster" adds PostgreSQL and Orthanc's PostgreSQL plugins (`make cluster`);
#   "test" adds those and Chromium for the viewer tests.
set -euo pipefail
packages=(orthanc orthanc-python orthanc-dicomweb orthanc-gdcm dcmtk python3-venv python3-dev g++ make curl nodejs npm)
case "${1:-run}" in
  cluster) packages+=(postgresql orthanc-postgresql) ;;
  test) packages+=(chromium dicom3tools postgresql orthanc-postgresql) ;;
esac
# nodejs/npm are only installed when no node is on PATH (machines may bring their own).
missing=()
for p in "${packages[@]}"; do
  case "$p" in nodejs|npm) command -v "${p/nodejs/node}" >/dev/null 2>&1 && continue ;; esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "Installing Debian packages: ${missing[*]}"
# The orthanc package's post-install starts a system service on 8042/4242; keep it from
# starting (and clashing with ours) where a policy-rc.d is not already in place.
policy=/usr/sbin/policy-rc.d; made_policy=0
if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null; $SUDO chmod +x "$policy"; made_policy=1; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
[ "$made_policy" -eq 1 ] && $SUDO rm -f "$policy"
# A system orthanc or postgresql service that was already enabled would hold our ports
# (8042/4242/5432): ours run on their own ports and data folders.
for service in orthanc postgresql; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled "$service" >/dev/null 2>&1; then
    $SUDO systemctl disable --now "$service" || true
  fi
done
exit 0
