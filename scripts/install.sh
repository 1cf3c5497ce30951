#!/usr/bin/env bash
# Installs everything the node needs on a Debian machine with Python 3.11:
# Debian packages (dcmtk, dicom3tools, orthanc, tcmalloc; postgresql for the tests) and a
# virtual environment at .venv/.
#   scripts/install.sh            the node
#   scripts/install.sh --viewer   the node plus Orthanc's DICOMweb plugin and OHIF Viewer's build
#                                 (for `spinenode demo --viewer`)
#   scripts/install.sh --test     the node plus what the tests need (the viewer included)
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
viewer=""
case "${1:-}" in
    --test) extras="[test]"; viewer=1 ;;
    --viewer) viewer=1 ;;
    "") ;;
    *) echo "usage: scripts/install.sh [--test | --viewer]" >&2; exit 2 ;;
esac

debs=(dcmtk dicom3tools orthanc libtcmalloc-minimal4 openssl)
# the tests start their own PostgreSQL server (tests/integration/test_workers_race.py) and load the
# status page in headless Chromium (tests/acceptance/test_status_page.py); Orthanc's DICOMweb plugin
# takes the STOW-RS results (tests/acceptance/test_orthanc_routing.py)
[ -n "$extras" ] && debs+=(postgresql chromium fonts-dejavu-core)
# the viewer tests drive Debian's chromium through its matching chromedriver (Selenium never
# downloads a browser or a driver), and fetch OHIF's built viewer with npm (below)
[ -n "$extras" ] && debs+=(chromium-driver)
[ -n "$viewer" ] && debs+=(orthanc-dicomweb)
[ -n "$viewer" ] && ! command -v npm >/dev/null && debs+=(npm)
# Debian's python3.11 makes virtual environments only with its venv package (ensurepip)
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
"$PY" -c "import ensurepip" 2>/dev/null || debs+=(python3-venv)
missing=()
for p in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
    # the packaged Orthanc starts a system service; the node's tests run their own
    if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now orthanc 2>/dev/null || true; fi
    $SUDO service orthanc stop 2>/dev/null || true
    if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now postgresql 2>/dev/null || true; fi
    $SUDO service postgresql stop 2>/dev/null || true
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned: a looser spec resolved by another package pulls GBs of CUDA wheels
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".${extras}"

# OHIF Viewer's published build for the viewer tests and `spinenode demo --viewer`: the npm
# package's dist/ only (npm pack: nothing is installed, built or run with node)
OHIF_VERSION=3.13.2
ohif_dist=.cache/ohif/$OHIF_VERSION/dist
if [ -n "$viewer" ] && [ ! -f "$ohif_dist/index.html" ]; then
    echo "fetching OHIF Viewer $OHIF_VERSION (npm pack @ohif/app) into $ohif_dist"
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "@ohif/app@$OHIF_VERSION" >/dev/null)
    tar -xzf "$tmp/ohif-app-$OHIF_VERSION.tgz" -C "$tmp" package/dist
    mkdir -p "$(dirname "$ohif_dist")"
    rm -rf "$ohif_dist"
    mv "$tmp/package/dist" "$ohif_dist"
    rm -rf "$tmp"
fi
