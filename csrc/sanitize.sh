#!/usr/bin/env bash
# Build the C core with AddressSanitizer + UndefinedBehaviorSanitizer in a scratch copy of
# the package and run the given test directories against it (default: tests/crypto).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
py=${PY:-$root/.venv/bin/python}
work=$root/build/sanitize
rm -rf "$work"
mkdir -p "$work"
cp -r mptcpsec csrc pyproject.toml "$work"/
find "$work/mptcpsec" -name '_core*.so' -delete
cd "$work"
MPTCPSEC_SANITIZE=1 "$py" - <<'PY'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("build_core", "csrc/build_core.py")
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
mod.ffibuilder.compile(tmpdir=".", verbose=False)
PY
asan=$(cc -print-file-name=libasan.so)
ubsan=$(cc -print-file-name=libubsan.so)
[ -f "$asan" ] || { echo "error: libasan not found; install gcc's sanitizer runtime (Debian: apt-get install libasan8 libubsan1)" >&2; exit 1; }
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(tests/crypto)
abs=()
for t in "${tests[@]}"; do abs+=("$root/$t"); done
# Python itself leaks by design at exit; leak checking would only report the interpreter.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export PYTHONPATH=$work
LD_PRELOAD="$asan $ubsan" "$py" -c 'import mptcpsec, mptcpsec._core as c; print("sanitized core:", c.__file__)'
LD_PRELOAD="$asan $ubsan" "$py" -m pytest -q -p no:cacheprovider --rootdir "$root" -c "$root/pyproject.toml" "${abs[@]}"
