#!/usr/bin/env bash
# Every unit test binary of a (non-sanitizer) build under valgrind memcheck. Each binary's cases run in forked
# children (tests/unit/harness.h), each checked by memcheck at its exit: an error or a definite leak there fails
# that case. Iteration counts are cut with VHD_TEST_SCALE so the whole pass stays within a few minutes.
#
# usage: scripts/valgrind.sh BUILD_DIR|TEST_BINARY...
# Prints "PASS/FAIL/SKIP: valgrind/<binary>/<case>" lines (counted by check-summary.py), one figures line per
# binary (errors; definite, indirect and possible leak bytes summed over its processes) and exits 1 on a failure.
set -u
export VHD_TEST_SCALE=${VHD_TEST_SCALE:-0.002}
# Everything runs 10-50 times slower under memcheck.
export VHD_TEST_TIMEOUT_SCALE=${VHD_TEST_TIMEOUT_SCALE:-5}
# Cases whose subject memcheck changes: excluded by name, with the reason printed as their SKIP line.
export VHD_TEST_EXCLUDE="test_ctl/socket_out_of_fds:valgrind reserves file descriptors of its own, so the fd limit the case reaches is not the one it set;test_fe_be/backend_killed:it compares every line of /proc/self/maps across reconnects, and valgrind's own mappings come and go"

bins=()
for a in "$@"; do
	if [ -d "$a" ]; then
		for b in "$a"/tests/test_*; do
			[ -f "$b" ] && [ -x "$b" ] && bins+=("$b")
		done
	else
		bins+=("$a")
	fi
done
if [ "${#bins[@]}" -eq 0 ]; then
	echo "usage: $0 BUILD_DIR|TEST_BINARY..." >&2
	exit 2
fi
command -v valgrind >/dev/null || { echo "FAIL: valgrind: not installed (scripts/deps.sh check)"; exit 1; }

logs=$(mktemp -d /tmp/vhd-valgrind.XXXXXX)
trap 'rm -rf "$logs"' EXIT
status=0
start=$SECONDS
tot_err=0 tot_def=0 tot_ind=0 tot_pos=0
for bin in "${bins[@]}"; do
	name=$(basename "$bin")
	t0=$SECONDS
	valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99 \
		--suppressions="$(dirname "$0")/valgrind.supp" \
		--trace-children=yes --trace-children-skip='*/sh,*/bash,*/ip,*/tc,*/ethtool,*/python3*' --log-file="$logs/$name.%p.log" "$bin" >"$logs/$name.out" 2>&1
	rc=$?
	# Case lines, renamed so they do not count as the plain run's; a failing case's output goes with it.
	sed -n -e 's/^\(PASS\|FAIL\|SKIP\): /\1: valgrind\//p' -e '/^---- /,/^FAIL: /{/^FAIL: /!p}' "$logs/$name.out"
	sum() { # field of the per-process summaries, summed
		grep -h "$1" "$logs/$name".*.log 2>/dev/null | sed 's/,//g' | awk -v f="$2" '{s += $f} END {print s + 0}'
	}
	err=$(sum "ERROR SUMMARY:" 4)
	def=$(sum "definitely lost:" 4)
	ind=$(sum "indirectly lost:" 4)
	pos=$(sum "possibly lost:" 4)
	nproc=$(ls "$logs/$name".*.log 2>/dev/null | wc -l)
	echo "valgrind: $name: $nproc processes, $err errors, definitely lost $def B, indirectly lost $ind B," \
		"possibly lost $pos B ($((SECONDS - t0)) s)"
	tot_err=$((tot_err + err)) tot_def=$((tot_def + def)) tot_ind=$((tot_ind + ind)) tot_pos=$((tot_pos + pos))
	failed_cases=$(grep -c '^FAIL: ' "$logs/$name.out")
	if [ "$err" -ne 0 ] || [ "$def" -ne 0 ]; then
		[ "$failed_cases" -eq 0 ] && echo "FAIL: valgrind/$name: $err memcheck errors, $def bytes definitely lost"
		grep -h -B2 -A12 "Invalid\|uninitialised\|definitely lost in" "$logs/$name".*.log | head -60
		status=1
	elif [ "$rc" -ne 0 ]; then
		[ "$failed_cases" -eq 0 ] && echo "FAIL: valgrind/$name: exit status $rc"
		status=1
	fi
	[ "$failed_cases" -ne 0 ] && status=1
	rm -f "$logs/$name".*
done
echo "valgrind: total $tot_err errors, definitely lost $tot_def B, indirectly lost $tot_ind B, possibly lost" \
	"$tot_pos B, $((SECONDS - start)) s"
exit $status
