#!/usr/bin/env bash
# One entry point for people and CI:
#   bash dev.sh app [app.py flags]   set up .venv (first run only) and start the app on http://127.0.0.1:7860
#   bash dev.sh test [pytest args]   set up .venv with test tools (and Debian's Chromium) and run every test,
#                                    two files at a time (pytest-xdist, one torch thread each; `-n 0`: one)
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

setup() {  # $1: requirements file
  [[ -x $VENV/bin/python ]] || "$PY" -m venv "$VENV"
  local stamp="$VENV/.installed-$(basename "$1")"
  if [[ ! -f $stamp || $1 -nt $stamp || requirements.txt -nt $stamp ]]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -r "$1"
    touch "$stamp"
  fi
}

chromium() {  # the browser tests drive Debian's Chromium through Playwright (never `playwright install`)
  # fonts-noto-cjk: the zh-CN page (tests and screenshots) in real Chinese glyphs, not boxes
  [[ -x /usr/bin/chromium && -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ]] && return
  local sudo=""; [[ $(id -u) == 0 ]] || sudo="sudo"
  $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium fonts-noto-cjk >/dev/null
}

case "${1:-}" in
  app) shift; setup requirements.txt; exec "$VENV/bin/python" app.py "$@" ;;
  test) shift; setup requirements-dev.txt; chromium; exec "$VENV/bin/python" -m pytest -n 2 --dist loadfile "$@" ;;
  *) echo "usage: bash dev.sh app [--host H --port P --share --device D] | bash dev.sh test [pytest args]" >&2; exit 64 ;;
esac
