#!/usr/bin/env bash
# Installs dicom3tools (David Clunie's DICOM validator `dciodvfy`) from Debian's packages when
# it is missing. The export tests run it on every file they write. Needs root or sudo; a
# second run does nothing.
set -euo pipefail
command -v dciodvfy >/dev/null && exit 0
sudo=""
if [[ $(id -u) != 0 ]]; then sudo="sudo"; fi
$sudo apt-get install -y -q dicom3tools >/dev/null 2>&1 || {
    $sudo apt-get update -q >/dev/null
    $sudo apt-get install -y -q dicom3tools >/dev/null
}
command -v dciodvfy >/dev/null
