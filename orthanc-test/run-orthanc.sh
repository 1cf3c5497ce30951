#!/usr/bin/env bash
# Run Debian's Orthanc with orthanc-test/orthanc.json, in the foreground, on a temporary storage
# folder: no systemd, no state left behind. The configuration is the one docker-compose.yml
# uses, with these overrides from the environment:
#   ORTHANC_DICOM_PORT (4242)  ORTHANC_HTTP_PORT (8042)  ORTHANC_STABLE_AGE (10)
#   SPINENODE_AE (SPINENODE)   SPINENODE_HOST (127.0.0.1)  SPINENODE_PORT (11112)
#   ORTHANC_STORAGE (a new temporary folder, removed on exit)
# Debian's DICOMweb plugin (package orthanc-dicomweb) is loaded when installed: /dicom-web/ then
# takes STOW-RS, QIDO-RS and WADO-RS.
# Stop it with SIGTERM or Ctrl-C; it exits cleanly and the temporary folder is removed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
command -v Orthanc >/dev/null || { echo "Orthanc is not installed: run scripts/install.sh" >&2; exit 1; }
workdir=$(mktemp -d -t spinenode-orthanc-XXXXXX)
storage=${ORTHANC_STORAGE:-$workdir/db}
cleanup() { rm -rf "$workdir"; }
trap cleanup EXIT
python3 - "$here/orthanc.json" "$workdir/orthanc.json" "$storage" "$here/route.lua" <<'PY'
import json, os, sys
src, dst, storage, lua = sys.argv[1:]
cfg = json.load(open(src))
env = os.environ.get
cfg["StorageDirectory"] = cfg["IndexDirectory"] = storage
cfg["DicomPort"] = int(env("ORTHANC_DICOM_PORT", cfg["DicomPort"]))
cfg["HttpPort"] = int(env("ORTHANC_HTTP_PORT", cfg["HttpPort"]))
cfg["StableAge"] = int(env("ORTHANC_STABLE_AGE", cfg["StableAge"]))
cfg["LuaScripts"] = [lua]
plugin = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
if os.path.exists(plugin):
    cfg["Plugins"] = [plugin]
    cfg["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/"}
cfg["DicomModalities"]["spinenode"] = [env("SPINENODE_AE", "SPINENODE"), env("SPINENODE_HOST", "127.0.0.1"),
                                       int(env("SPINENODE_PORT", "11112"))]
json.dump(cfg, open(dst, "w"), indent=2)
PY
mkdir -p "$storage"
Orthanc "$workdir/orthanc.json" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid; cleanup' TERM INT
wait $pid
