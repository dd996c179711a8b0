#!/usr/bin/env bash
# Print the path of a Python 3.13 interpreter: $PYTHON, python3.13 on PATH, or pyenv's 3.13.x.
set -euo pipefail
candidates=()
[ -n "${PYTHON:-}" ] && candidates+=("$PYTHON")
command -v python3.13 >/dev/null 2>&1 && candidates+=("$(command -v python3.13)")
if command -v pyenv >/dev/null 2>&1 || [ -d "${PYENV_ROOT:-$HOME/.pyenv}" ]; then
  pyenv_root=$( (pyenv root 2>/dev/null) || echo "${PYENV_ROOT:-$HOME/.pyenv}")
  for p in "$pyenv_root"/versions/3.13*/bin/python3.13; do [ -x "$p" ] && candidates+=("$p"); done
fi
for p in "${candidates[@]}"; do
  if "$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
    echo "$p"
    exit 0
  fi
done
echo "error: Python 3.13 not found. Install it (for example 'pyenv install 3.13') or set PYTHON=/path/to/python3.13." >&2
exit 1
