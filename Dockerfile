# Orthanc + CBMIR plugin + OHIF with the "Similar cases" panel, for container deployments.
# Mirrors the Debian path of `make run`. CI cannot build it (no Docker engine there): see README.
#
#   docker build -t orthanc-cbmir .                       # CPU
#   docker build -t orthanc-cbmir:gpu --build-arg ORT_PACKAGE=onnxruntime-gpu .   # NVIDIA GPU
#   docker compose up
ARG ORTHANC_IMAGE=orthancteam/orthanc:25.2.0

# 1. The viewer: fetch the pinned prebuilt OHIF, rewrite it for /ohif/, build the extension.
FROM node:20-bookworm AS viewer
WORKDIR /src
COPY viewer-extension/ viewer-extension/
RUN make -C viewer-extension build

# 2. Orthanc (official image, Python and DICOMweb plugins included) + the CBMIR plugin.
FROM ${ORTHANC_IMAGE}
ARG ORT_PACKAGE=onnxruntime
# annoy builds from source: it needs a compiler and the Python headers.
RUN apt-get update && apt-get install -y --no-install-recommends g++ python3-dev python3-pip \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/cbmir
COPY pyproject.toml README.md ./
# Only the plugin's runtime (pyproject `dependencies`): no export/, no offline tools, no torch.
COPY plugin/ plugin/
RUN pip3 install --no-cache-dir --break-system-packages . \
    && if [ "$ORT_PACKAGE" != onnxruntime ]; then \
         pip3 uninstall -y --break-system-packages onnxruntime \
         && pip3 install --no-cache-dir --break-system-packages "$ORT_PACKAGE"; fi
COPY models/ models/
COPY --from=viewer /src/viewer-extension/dist/ viewer/
COPY docker/cbmir.json /etc/orthanc/cbmir.json

ENV ORTHANC__PYTHON_SCRIPT=/opt/cbmir/plugin/orthanc_cbmir.py \
    DICOM_WEB_PLUGIN_ENABLED=true \
    GDCM_PLUGIN_ENABLED=true \
    ORTHANC__DICOM_WEB__STUDIES_METADATA=Full \
    ORTHANC__OVERWRITE_INSTANCES=false
VOLUME ["/var/lib/orthanc/db", "/var/lib/orthanc/cbmir"]
