# The two entry points (see README.md): `make demo` and `make check`. Everything else is a helper.
# Builds go to build/release (optimised) and build/asan (AddressSanitizer + UndefinedBehaviorSanitizer).
MESON ?= meson
B := build

.PHONY: all deps release asan check check-release check-asan demo bench soak valgrind clean

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

release: $(B)/release/build.ninja
	ninja -C $(B)/release

asan: $(B)/asan/build.ninja
	ninja -C $(B)/asan

# Every test, twice: release build then sanitizer build. Ends with "N passed, N failed[, N skipped]".
check:
	@scripts/deps.sh check
	@$(MAKE) --no-print-directory release asan
	@scripts/check.sh $(B)/release $(B)/asan

check-release: release
	@scripts/check.sh $(B)/release

check-asan: asan
	@scripts/check.sh $(B)/asan

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
