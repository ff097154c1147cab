# mqfs - a durable, partitioned message queue whose only API is the filesystem.
#
#   make            build ./mqfs
#   make run        install missing packages (as root), build, mount ./mnt over ./data
#   make stop       unmount ./mnt
#   make test       install, build, run every test (unit, bats, and both under ASan+UBSan)
#   make asan       the ASan+UBSan daemon and unit tests;  make tsan: unit tests under TSan
#   make bench      scripts/bench.sh
#   make install    PREFIX=/usr/local DESTDIR=

PREFIX ?= /usr/local
CC ?= cc
CFLAGS ?= -O2 -g
PKGS = fuse3 libxxhash
WARN = -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes
ALL_CFLAGS = $(CFLAGS) -std=c11 $(WARN) -MMD -MP \
	$$(pkg-config --cflags $(PKGS))
SAN = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
TSAN = -fsanitize=thread -fno-omit-frame-pointer

CORE_SRC = $(wildcard core/*.c)
FS_SRC = $(wildcard fs/*.c) $(wildcard replication/*.c)
UNIT_SRC = $(wildcard test/unit/test_*.c)

# $(1): build dir, $(2): extra flags
CORE_OBJ = $(CORE_SRC:%.c=$(1)/%.o)
FS_OBJ = $(FS_SRC:%.c=$(1)/%.o)

all: mqfs

mqfs: $(call CORE_OBJ,build) $(call FS_OBJ,build)
	$(CC) $(CFLAGS) -o $@ $^ $$(pkg-config --libs $(PKGS)) -lpthread

mqfs-asan: $(call CORE_OBJ,build/asan) $(call FS_OBJ,build/asan)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $$(pkg-config --libs $(PKGS)) -lpthread

build/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

build/asan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN) -c -o $@ $<

# Unit tests link core/ and libxxhash only: no libfuse, which keeps core/
# free of FUSE mechanically (see also check-layering).
build/unit/%: test/unit/%.c $(call CORE_OBJ,build)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $(filter %.c %.o,$^) $$(pkg-config --libs libxxhash) -lpthread

build/tsan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(TSAN) -c -o $@ $<

build/unit-tsan/%: test/unit/%.c $(call CORE_OBJ,build/tsan)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(TSAN) -o $@ $(filter %.c %.o,$^) $$(pkg-config --libs libxxhash) -lpthread

build/unit-asan/%: test/unit/%.c $(call CORE_OBJ,build/asan)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN) -o $@ $(filter %.c %.o,$^) $$(pkg-config --libs libxxhash) -lpthread

test/tools/%: test/tools/%.c
	$(CC) $(CFLAGS) -std=c11 $(WARN) -o $@ $<

UNITS = $(UNIT_SRC:test/unit/%.c=build/unit/%)
UNITS_ASAN = $(UNIT_SRC:test/unit/%.c=build/unit-asan/%)
UNITS_TSAN = $(UNIT_SRC:test/unit/%.c=build/unit-tsan/%)
TOOLS = $(patsubst %.c,%,$(wildcard test/tools/*.c))

unit: $(UNITS) $(UNITS_ASAN)

# The unit tests under ThreadSanitizer (it cannot be combined with ASan).
tsan: $(UNITS_TSAN)
	@for t in $(UNITS_TSAN); do echo "# $$t"; $$t || exit 1; done

# Only the sanitizer builds and their unit tests (make test runs them too).
asan: mqfs-asan $(UNITS_ASAN)
	@for t in $(UNITS_ASAN); do echo "# $$t"; $$t || exit 1; done

check-layering:
	@if grep -nE '#include <fuse|\<fuse_' core/*.c core/*.h replication/*.c replication/*.h; then \
		echo "core/ and replication/ must not use FUSE"; exit 1; fi
	@if grep -nE '#include "\.\./(fs|replication)/' core/*.c core/*.h; then \
		echo "core/ must not depend on fs/ or replication/"; exit 1; fi

deps:
	@scripts/deps.sh

# The whole suite, ending in "N passed, N failed".
test:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory check-layering all mqfs-asan unit $(TOOLS)
	@scripts/test.sh

check: test

run:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory all
	@scripts/run.sh

stop:
	@fusermount3 -u mnt && echo "unmounted ./mnt (data stays in ./data)"

bench: all
	@scripts/bench.sh

install: mqfs
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 mqfs $(DESTDIR)$(PREFIX)/bin/mqfs

clean:
	rm -rf build mqfs mqfs-asan $(TOOLS)

.PHONY: all unit tsan asan check-layering deps test check run stop bench install clean

-include $(shell find build -name '*.d' 2>/dev/null)
