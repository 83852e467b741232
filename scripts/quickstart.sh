#!/usr/bin/env bash
# The README's command 1: set up eas in ./.venv and run the default search.
#
#   bash scripts/quickstart.sh [--section.field VALUE ...]   (arguments go to the search)
#
# 1. On Debian/Ubuntu, installs what is missing of the default dataset (the package
#    dataset-fashion-mnist) and of python3-venv, as root or with sudo when available
#    (apt-get update only if the first try fails). Elsewhere, or if that fails, it
#    carries on: the search then downloads Fashion-MNIST, or says in one line what to
#    install or which --data.root to give.
# 2. Creates the virtual environment .venv (kept if it exists) and installs eas into it.
# 3. Runs the default search: python -m eas.train_controller "$@".
set -euo pipefail
cd "$(dirname "$0")/.."

DATASET_DIR=/usr/share/datasets/fashion-mnist
packages=()
[ -d "$DATASET_DIR" ] || packages+=(dataset-fashion-mnist)
python3 -c "import ensurepip" 2>/dev/null || packages+=(python3-venv)

apt_install() {
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "quickstart: not root and no sudo: skipping 'apt-get install $*'" >&2
            return 1
        fi
        sudo=(sudo)
    fi
    local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
    "${apt[@]}" install -y "$@" || { "${apt[@]}" update && "${apt[@]}" install -y "$@"; }
}

if [ "${#packages[@]}" -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "quickstart: installing ${packages[*]} ..."
    apt_install "${packages[@]}" \
        || echo "quickstart: could not install ${packages[*]}; carrying on (the search downloads the data if it can)" >&2
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
. .venv/bin/activate
pip install -e .

echo "quickstart: running the default search (python -m eas.train_controller $*)"
exec python -m eas.train_controller "$@"
