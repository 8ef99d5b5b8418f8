#!/usr/bin/env bash
# One ctest run of a CI leg, with its outcome written to the run's summary.
#
#   bash cmake/ctest_leg.sh SUMMARY_FILE "LEG NAME" PRESET [ctest arguments...]
#
# A test that fails is run once more, alone (-j 1), with its output. A test that then passes is
# reported as FLAKY in the summary (by name, with the leg) and does not fail the leg: on a 2-core
# machine running two test processes at once, a timing bound in an integration test can be
# missed by load alone. A test that fails twice fails the leg. The summary is what dev.sh prints
# last, so the tail of a CI log always names what failed.
set -uo pipefail

summary="$1"
leg="$2"
preset="$3"
shift 3

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
failed_log="$here/build/$preset/Testing/Temporary/LastTestsFailed.log"

rm -f "$failed_log"
if ctest --preset "$preset" "$@"; then
    echo "passed   $leg" >>"$summary"
    exit 0
fi
if [ ! -s "$failed_log" ]; then
    echo "FAILED   $leg (ctest failed before naming a test)" >>"$summary"
    exit 1
fi
first=$(cut -d: -f2- "$failed_log" | tr '\n' ' ')
echo "== $leg: failed: $first; running them once more, alone"
if ctest --preset "$preset" --rerun-failed -j 1 --output-on-failure; then
    echo "FLAKY    $leg: failed, then passed alone: $first" >>"$summary"
    exit 0
fi
again=$(cut -d: -f2- "$failed_log" | tr '\n' ' ')
echo "FAILED   $leg: $again" >>"$summary"
exit 1
