# The two entry points (see README.md): `make demo` and `make check`. Everything else is a helper.
# Builds go to build/release (optimised) and build/asan (AddressSanitizer + UndefinedBehaviorSanitizer),
# build/tsan (ThreadSanitizer) and build/fuzz (clang, libFuzzer harnesses under ASan+UBSan; docs/fuzzing.md).
MESON ?= meson
B := build
# make fuzz: seconds per harness, and which harnesses (default all).
FUZZ_SECONDS ?= 600
FUZZ ?= vu_msg virtq net_tx ctl drv net_rx gso

.PHONY: all deps release asan tsan fuzz-build fuzz check check-release check-asan check-tsan demo bench soak valgrind clean

all: release

deps:
	@scripts/deps.sh build

$(B)/release/build.ninja:
	@scripts/deps.sh build
	$(MESON) setup $(B)/release --buildtype=release

$(B)/asan/build.ninja:
	@scripts/deps.sh check
	$(MESON) setup $(B)/asan --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false \
		-Dc_args=-fno-sanitize-recover=all

# -Wno-tsan: GCC warns that TSan does not model atomic_thread_fence; the fences the rings use pair notification
# flags (docs/virtq.md), and what they publish also goes through acquire/release index accesses TSan does see.
$(B)/tsan/build.ninja:
	@scripts/deps.sh check
	$(MESON) setup $(B)/tsan --buildtype=debug -Db_sanitize=thread -Db_lundef=false -Dc_args=-Wno-tsan

$(B)/fuzz/build.ninja:
	@scripts/deps.sh fuzz
	CC=clang $(MESON) setup $(B)/fuzz -Dfuzz=true --buildtype=debugoptimized \
		-Db_sanitize=address,undefined -Db_lundef=false -Dc_args=-fno-sanitize-recover=all

release: $(B)/release/build.ninja
	ninja -C $(B)/release

asan: $(B)/asan/build.ninja
	ninja -C $(B)/asan

tsan: $(B)/tsan/build.ninja
	ninja -C $(B)/tsan

fuzz-build: $(B)/fuzz/build.ninja
	ninja -C $(B)/fuzz

# Each harness in FUZZ for FUZZ_SECONDS, one after the other; new inputs in build/fuzz/corpus/NAME, crashes in
# build/fuzz/artifacts/NAME. Fails if any harness found something.
fuzz: fuzz-build
	@status=0; for f in $(FUZZ); do \
		VHD_FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run-fuzz.sh $(B)/fuzz/tests/fuzz/fuzz_$$f $$f $(B)/fuzz || status=1; \
	done; exit $$status

# Every test, twice: release build then sanitizer build; the unit and integration tests once more under
# ThreadSanitizer (suite 'tsan'); then each fuzz harness for VHD_FUZZ_SECONDS (default 60, two at a time).
# Ends with "N passed, N failed[, N skipped]".
check:
	@scripts/deps.sh check
	@$(MAKE) --no-print-directory release asan tsan fuzz-build
	@scripts/check.sh --fuzz $(B)/fuzz $(B)/release $(B)/tsan $(B)/asan

check-release: release
	@scripts/check.sh $(B)/release

check-asan: asan
	@scripts/check.sh $(B)/asan

check-tsan: tsan
	@scripts/check.sh $(B)/tsan

demo: release
	@scripts/deps.sh demo
	scripts/demo.sh $(B)/release

bench: release
	@scripts/deps.sh bench
	bench/run.sh $(B)/release

# Long runs kept out of `make check`: SOAK_ROUNDS rounds (default 10) of guest traffic through vhostd with the
# guests checking their own memory, and 10^7 frames through the frontend/back-end pair, in the sanitizer build.
soak: asan
	@scripts/deps.sh check
	scripts/soak.sh $(B)/asan $(SOAK_ROUNDS)

# Every unit test under valgrind memcheck (also in `make check`, as the release build's 'valgrind' suite).
valgrind: release
	@scripts/deps.sh check
	scripts/valgrind.sh $(B)/release

clean:
	rm -rf $(B)
