# vlq: one non-recursive build. `make help` lists the targets.
#
# Objects go to $(BUILD) (default build/), header dependencies come from -MMD -MP,
# every library comes through pkg-config, and the CUDA plugin is built when nvcc is
# found (CUDA=0 skips it). SAN=1 builds everything under ASan+UBSan in build-san/.

PKG_CONFIG ?= pkg-config
CC         ?= cc
CFLAGS     ?= -O2 -g
NVCC       ?= /usr/local/cuda/bin/nvcc
CUDA       ?= auto
PYTHON     ?= python3

PKGS := libavformat libavcodec libavutil libswscale sqlite3 libcurl zlib libcrypto \
        jansson libpcre2-8 libutf8proc poppler-glib inih libpq

# Debian packages that provide $(PKGS) and what the tests run (ffmpeg CLI, python3).
DEB_PKGS := build-essential pkg-config libavformat-dev libavcodec-dev libavutil-dev \
            libswscale-dev libsqlite3-dev sqlite3 libcurl4-openssl-dev zlib1g-dev libssl-dev \
            libjansson-dev libpcre2-dev libutf8proc-dev libpoppler-glib-dev libinih-dev \
            libpq-dev ffmpeg python3 postgresql

ifeq ($(SAN),1)
BUILD ?= build-san
override CFLAGS += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
override LDFLAGS += -fsanitize=address,undefined
else
BUILD ?= build
endif

ifneq ($(MAKECMDGOALS),deps)
MISSING := $(foreach p,$(PKGS),$(if $(shell $(PKG_CONFIG) --exists $(p) && echo y),,$(p)))
ifneq ($(strip $(MISSING)),)
$(error missing libraries: $(MISSING); run `make deps` (apt-get install $(DEB_PKGS)))
endif
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS))
PKG_LIBS   := $(shell $(PKG_CONFIG) --libs $(PKGS))
endif

override CFLAGS += -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers \
                   -Wno-format-truncation -Wshadow -Wvla \
                   -fopenmp -MMD -MP -Isrc -Ijobs $(PKG_CFLAGS)
ifeq ($(WERROR),1)
override CFLAGS += -Werror
endif
LIBS := $(PKG_LIBS) -fopenmp -lm -lpthread -ldl

# Sources: the program is every .c under src/ and jobs/ except main.c, which only the
# vlq binary links (the test binaries have their own main).
LIB_SRC  := $(filter-out src/main.c,$(wildcard src/*.c)) $(wildcard jobs/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(filter-out tests/vlq_testkinds.c,$(wildcard tests/*.c))
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)

ifeq ($(V),1)
Q :=
else
Q := @
endif

.PHONY: all deps test bench fuzz fixtures install clean help headers cuda
all: vlq

vlq: $(BUILD)/vlq
	$(Q)cp $< $@

$(BUILD)/vlq: $(BUILD)/src/main.o $(BUILD)/libvlq.a
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/libvlq.a: $(LIB_OBJ)
	@echo "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

# vlq with the test-only job kinds (tests/vlq_testkinds.c has its own main).
$(BUILD)/vlq-testkinds: $(BUILD)/tests/vlq_testkinds.o $(BUILD)/libvlq.a
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/vlq-test: $(TEST_OBJ) $(BUILD)/libvlq.a
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

TEST_BINS := $(BUILD)/vlq-test $(BUILD)/vlq $(if $(wildcard tests/vlq_testkinds.c),$(BUILD)/vlq-testkinds)

# make test [T=prefix]: every C test and every tests/e2e/*.sh, each in its own process.
test: $(TEST_BINS)
	$(Q)VLQ_BIN=$(abspath $(BUILD)/vlq) VLQ_TESTKINDS_BIN=$(abspath $(BUILD)/vlq-testkinds) \
	  VLQ_ROOT=$(CURDIR) $(BUILD)/vlq-test $(T)

headers:
	@for h in src/*.h; do echo '#include "'$$(basename $$h)'"' | \
	  $(CC) $(CFLAGS) -x c -fsyntax-only -Isrc - || exit 1; done; echo "headers ok"

deps:
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	 $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(DEB_PKGS)

install: vlq
	install -D -m 755 vlq $(DESTDIR)/usr/local/bin/vlq
	install -D -m 644 config/vlq.conf $(DESTDIR)/etc/vlq/vlq.conf.example

# the golden fixtures (tests/golden/README.md): needs the packages of
# tests/golden/requirements.txt, e.g. make fixtures PYTHON=/opt/ref/venv/bin/python
fixtures: $(BUILD)/vlq
	$(PYTHON) tests/golden/gen.py
	$(BUILD)/vlq convert tests/golden/tiny -o $(BUILD)/tiny-q4.vlq --quant q4
	rm -rf $(BUILD)/tiny-q4 && $(BUILD)/vlq export $(BUILD)/tiny-q4.vlq -o $(BUILD)/tiny-q4
	$(PYTHON) tests/golden/gen.py --quantized $(BUILD)/tiny-q4 --tag q4

clean:
	rm -rf build build-san build-fuzz vlq

help:
	@echo "make            build ./vlq"
	@echo "make deps       apt-get install the Debian packages the build and tests need"
	@echo "make test       build and run every test (T=prefix filters); SAN=1 under ASan+UBSan"
	@echo "make bench      benchmarks (not timed tests)"
	@echo "make fuzz       build the libFuzzer targets (clang)"
	@echo "make fixtures   regenerate golden fixtures (needs PyPI: tests/golden/requirements.txt)"
	@echo "make install    install vlq to /usr/local/bin"
	@echo "make clean      remove build outputs"
	@echo "V=1 shows full commands; WERROR=1 turns warnings into errors; CUDA=0 skips the CUDA plugin"

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# make fuzz: the libFuzzer targets tests/fuzz/*.c (clang, ASan+UBSan), with their own
# objects in build-fuzz/. Run one: build-fuzz/fuzz_tok -max_total_time=600.
FUZZ_CC  ?= clang
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer-no-link,address,undefined -std=gnu11 -Isrc -Ijobs \
              -Wno-unknown-pragmas $(PKG_CFLAGS)
FUZZ_OBJ := $(LIB_SRC:%.c=build-fuzz/%.o)
FUZZ_BIN := $(patsubst tests/fuzz/%.c,build-fuzz/%,$(wildcard tests/fuzz/*.c))
fuzz: $(FUZZ_BIN)
build-fuzz/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  FUZZCC  $<"
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) -MMD -MP -c -o $@ $<
build-fuzz/libvlq.a: $(FUZZ_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^
build-fuzz/%: tests/fuzz/%.c build-fuzz/libvlq.a
	@echo "  FUZZLD  $@"
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS) -lm -lpthread -ldl

# make bench-tok: the tokenizer beside HF tokenizers (tests/bench/bench_tok.py).
REF_PYTHON ?= $(if $(wildcard /opt/ref/venv/bin/python),/opt/ref/venv/bin/python,python3)
.PHONY: bench-tok
bench: bench-tok
bench-tok: $(BUILD)/bench-tok
	$(Q)$(REF_PYTHON) tests/bench/bench_tok.py $(BUILD)/bench-tok
$(BUILD)/bench-tok: $(BUILD)/tests/bench/bench_tok.o $(BUILD)/libvlq.a
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# ---- media benchmark (make bench-media; part of make bench) ----
# A 60 s 1080p H.264 video (x264 veryfast: B-frames, 250-frame GOP) made once in
# $(BUILD)/bench/, sampled at 2 fps and resized to the model grid by vlq and by the CLI.
BENCH_MEDIA_VIDEO := $(BUILD)/bench/1080p60s.mp4
.PHONY: bench-media
bench: bench-media
bench-media: $(BUILD)/vlq-bench-media $(BENCH_MEDIA_VIDEO)
	$(Q)$(BUILD)/vlq-bench-media $(BENCH_MEDIA_VIDEO) 2

$(BENCH_MEDIA_VIDEO):
	@mkdir -p $(dir $@)
	@echo "  GEN     $@"
	$(Q)ffmpeg -nostdin -v error -y -f lavfi -i testsrc2=size=1920x1080:rate=25 -t 60 \
	  -c:v libx264 -preset veryfast -pix_fmt yuv420p $@.tmp.mp4 && mv $@.tmp.mp4 $@

$(BUILD)/vlq-bench-media: $(BUILD)/tests/bench/bench_media.o $(BUILD)/libvlq.a
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)
