#!/usr/bin/env bash
# Installs everything the tests need: the Python packages of requirements.txt and, where
# apt-get is available, the Debian packages of the staff tools (the grader's sandbox, a
# one-node Slurm cluster, PostgreSQL, a browser). Run it again at will: it installs only
# what is missing.
set -euo pipefail
cd "$(dirname "$0")"

DEBIAN_PACKAGES=(bubblewrap slurm-wlm munge postgresql chromium)

python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    -r requirements.txt

missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' ||
        missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "install.sh: no apt-get here; install ${missing[*]} by hand (the tests that need them fail)" >&2
    exit 0
fi
sudo=()
if [ "$(id -u)" != 0 ]; then
    sudo=(sudo)
fi
echo "install.sh: apt-get install ${missing[*]}" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq \
    -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
