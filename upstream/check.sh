#!/usr/bin/env bash
# Check the patches in this directory against a Captum source checkout.
#
# Usage:
#   PYTHON=/path/to/python upstream/check.sh /path/to/captum
#
# /path/to/captum must be Captum's git repository (https://github.com/pytorch/captum)
# checked out at tag v0.9.0, the Captum version captum-video pins; the patches are
# diffs against that version. It is not modified: it is copied (without .git) to a
# temporary directory. For every patch, in order, the script
#   1. runs the Captum test modules that cover the code the patch touches ("before"),
#   2. applies the patch with `git apply` (on top of the earlier patches),
#   3. runs those test modules again, now with the tests the patch adds ("after").
# Tests run as `$PYTHON -m pytest` from the root of the copy, so that `captum` and
# `tests` are imported from the (patched) copy; the script checks that `captum` is.
# PYTHON (default: python) needs torch, Captum's dependencies and pytest.
#
# Exit status: 0 if every patch applies and every test passes after applying it,
# 1 otherwise, 2 for a usage error.

set -u -o pipefail

PYTHON=${PYTHON:-python}

if [ $# -ne 1 ] || [ ! -d "$1/captum" ] || [ ! -d "$1/tests" ]; then
    echo "usage: PYTHON=python $0 /path/to/captum  (Captum's repository at tag v0.9.0)" >&2
    exit 2
fi

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$1" && pwd)

# Test modules to run for each patch (relative to the checkout root).
modules_for() {
    case "$1" in
    0001-lrp-3d-layers.patch)
        echo tests/attr/test_lrp.py tests/attr/layer/test_layer_lrp.py \
            tests/attr/test_hook_removal.py tests/attr/test_targets.py
        ;;
    0002-layer-gradient-stop-at-layer.patch)
        echo tests/utils/test_gradient.py tests/attr/layer/test_grad_cam.py \
            tests/attr/test_guided_grad_cam.py \
            tests/attr/layer/test_layer_gradient_x_activation.py
        ;;
    *)
        echo "no test modules listed for $1 in $0" >&2
        return 1
        ;;
    esac
}

# Per-module counts from a JUnit XML file: count_results XML MODULE...
count_results() {
    "$PYTHON" -c '
import sys
import xml.etree.ElementTree as ET

try:
    cases = list(ET.parse(sys.argv[1]).getroot().iter("testcase"))
except Exception:
    cases = []
for module in sys.argv[2:]:
    dotted = module[: -len(".py")].replace("/", ".")
    n = dict(passed=0, failed=0, errors=0, skipped=0)
    for case in cases:
        cls = case.get("classname", "")
        if not (
            cls == dotted
            or cls.startswith(dotted + ".")
            or (cls == "" and case.get("name") == dotted)
        ):
            continue
        tags = {child.tag for child in case}
        if "error" in tags:
            n["errors"] += 1
        elif "failure" in tags:
            n["failed"] += 1
        elif "skipped" in tags:
            n["skipped"] += 1
        else:
            n["passed"] += 1
    print(
        "{:<52} {} passed, {} failed, {} errors, {} skipped".format(
            module, n["passed"], n["failed"], n["errors"], n["skipped"]
        )
    )
' "$@"
}

work=$(mktemp -d "${TMPDIR:-/tmp}/captum-upstream-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
tree="$work/captum"
mkdir "$tree"
if ! (cd "$src" && tar --exclude=./.git -cf - .) | (cd "$tree" && tar -xf -); then
    echo "FAILED to copy $src" >&2
    exit 1
fi
# Make the copy its own git repository, so that `git apply` does not look at a
# repository the temporary directory might be inside of.
git -C "$tree" init -q || exit 1

if ! captum_file=$(cd "$tree" && "$PYTHON" -c "import captum; print(captum.__file__)"); then
    echo "FAILED: $PYTHON cannot import captum from $tree" >&2
    exit 1
fi
case "$captum_file" in
"$tree"/*) ;;
*)
    echo "FAILED: $PYTHON imports captum from $captum_file, not from $tree" >&2
    exit 1
    ;;
esac
echo "python: $("$PYTHON" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__)')"
echo "captum source: $src (copied to $tree, imported as $captum_file)"

# run_modules PATCH STAGE MODULE...: run the test modules in one pytest process,
# print and record the counts per module.
summary=()
status=0
run_modules() {
    local patch=$1 stage=$2 xml rc module line
    local present=()
    shift 2
    for module in "$@"; do
        if [ -f "$tree/$module" ]; then
            present+=("$module")
        else
            line=$(printf '%-52s %s' "$module" "(module not present)")
            summary+=("$(printf '%-38s %-6s %s' "$patch" "$stage" "$line")")
            echo "  $stage $line"
        fi
    done
    [ ${#present[@]} -eq 0 ] && return 0
    xml="$work/$patch-$stage.xml"
    (cd "$tree" && "$PYTHON" -m pytest -q -rfE -p no:cacheprovider --junitxml="$xml" \
        "${present[@]}" >"$xml.log" 2>&1)
    rc=$?
    while IFS= read -r line; do
        summary+=("$(printf '%-38s %-6s %s' "$patch" "$stage" "$line")")
        echo "  $stage $line"
    done < <(count_results "$xml" "${present[@]}")
    echo "  $stage: pytest exit status $rc"
    if [ "$rc" -ne 0 ]; then
        { grep -E '^(FAILED|ERROR) ' "$xml.log" | head -n 20; tail -n 1 "$xml.log"; } |
            sed 's/^/    | /'
        summary+=("$(printf '%-38s %-6s %s' "$patch" "$stage" "pytest exit status $rc")")
        if [ "$stage" = after ]; then
            status=1
        fi
    fi
}

shopt -s nullglob
patches=("$here"/[0-9][0-9][0-9][0-9]-*.patch)
if [ ${#patches[@]} -eq 0 ]; then
    echo "FAILED: no patches in $here" >&2
    exit 1
fi

for patch_path in "${patches[@]}"; do
    patch=$(basename "$patch_path")
    echo "== $patch"
    modules=$(modules_for "$patch") || exit 1
    # shellcheck disable=SC2086
    run_modules "$patch" before $modules
    if ! (cd "$tree" && git apply --check "$patch_path" && git apply "$patch_path"); then
        echo "FAILED: $patch does not apply" >&2
        summary+=("$(printf '%-38s %s' "$patch" "DOES NOT APPLY")")
        status=1
        break
    fi
    echo "  applied $patch"
    # shellcheck disable=SC2086
    run_modules "$patch" after $modules
done

echo
echo "== summary (before/after applying each patch; patches are applied in order)"
printf '%s\n' "${summary[@]}"
if [ "$status" -eq 0 ]; then
    echo "OK: all patches apply and all tests pass after applying them"
else
    echo "FAILED"
fi
exit "$status"
