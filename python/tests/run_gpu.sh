#!/usr/bin/env bash
# The muse package's tests on a GPU machine, against an installed prefix
# (cmake --install BUILD --prefix PREFIX, or scripts/package.sh PREFIX): the
# torch-free unittest suite, then the PyTorch suite (test_torch.py, pytest),
# then a short table of what they measured (host overhead, accuracy).
# Usage: python/tests/run_gpu.sh PREFIX [LOGDIR]   (exit status 0 when all pass)
set -uo pipefail
prefix=$(cd "${1:?usage: run_gpu.sh PREFIX [LOGDIR]}" && pwd)
logs=${2:-${TMPDIR:-/tmp}/muse-python-tests}
mkdir -p "$logs"
logs=$(cd "$logs" && pwd)
# The installed package must find libmuse by itself: no MUSE_LIBRARY.
unset MUSE_LIBRARY
export PYTHONPATH="$prefix/python" MUSE_TEST_OUT="$logs" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1

python3 -m muse > "$logs/env.txt" 2>&1
cat "$logs/env.txt"
(cd "$prefix/python/tests" && python3 -m unittest test_package) > "$logs/unittest.log" 2>&1
unit=$?
tail -n 3 "$logs/unittest.log"
python3 -m pytest -v -rfEs --durations=8 -p no:cacheprovider --junitxml="$logs/junit.xml" \
  "$prefix/python/tests/test_torch.py" > "$logs/pytest.log" 2>&1
torch_rc=$?
# The failures' summary, the slowest tests and the counts.
sed -n '/short test summary info/,$p;/slowest/,/^$/p' "$logs/pytest.log" | cut -c1-400

python3 - "$logs" <<'PY'
import json, os, sys
logs = sys.argv[1]
for name in ("host_overhead.json", "accuracy.json"):
    path = os.path.join(logs, name)
    if not os.path.exists(path):
        print("%s: not written" % name)
        continue
    with open(path) as f:
        data = json.load(f)
    print("== %s" % name)
    for key, value in sorted(data.items()):
        if isinstance(value, dict):
            print(key)
            for k, v in value.items():
                print("  %-55s %8.1f us" % (k, v))
        else:
            print("%-57s %s" % (key, value))
PY
echo "unittest rc=$unit  pytest rc=$torch_rc"
exit $((unit || torch_rc))
