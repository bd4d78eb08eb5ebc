# Build, install and package k8s-disc.
#
#   make                     release build (target/release/libk8s_disc.so)
#   make install             install under PREFIX (default /opt/k8s-disc): lib/ and lua/, as the README configures
#   make install PREFIX=/usr/local/openresty/site LUA_DIR=/usr/local/openresty/site/lualib \
#                LIB_DIR=/usr/local/openresty/site/lualib
#                            straight onto OpenResty's default search paths
#   make dist                release tarball target/dist/k8s-disc-VERSION-linux-ARCH.tar.gz
#   make test                the whole test suite (scripts/test.sh)
#   PROFILE=debug            any of the above with the debug build
#
# The release library is installed stripped, its debug information split off as Debian packages do: into
# DEBUG_DIR (default LIB_DIR/.debug, where gdb looks for it by the library's .gnu_debuglink). DEBUG_INFO=split
# (release default), drop (stripped, no debug file) or keep (unstripped, the PROFILE=debug default).
# `make dist` puts the debug file in a tarball of its own, k8s-disc-VERSION-linux-ARCH-dbgsym.tar.gz, which
# unpacks over the main one.
#
# The library's soname is libk8s_disc.so.MAJOR.MINOR (0.x: every minor release may change the C ABI); the Lua
# module refuses a library whose MAJOR.MINOR differs from its own.

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
ABI     := $(shell echo $(VERSION) | cut -d. -f1,2)
ARCH    := $(shell uname -m)
PREFIX  ?= /opt/k8s-disc
LIB_DIR ?= $(PREFIX)/lib
LUA_DIR ?= $(PREFIX)/lua
INC_DIR ?= $(PREFIX)/include
DESTDIR ?=
DEBUG_DIR ?= $(LIB_DIR)/.debug
DEBUG_DESTDIR ?= $(DESTDIR)

PROFILE ?= release
DEBUG_INFO ?= $(if $(filter release,$(PROFILE)),split,keep)
LIB     := target/$(PROFILE)/libk8s_disc.so
LUA_FILES := $(shell cd lua && find . -name '*.lua' | sed 's,^\./,,' | sort)
DIST    := target/dist/k8s-disc-$(VERSION)-linux-$(ARCH)

.PHONY: all install strip-installed uninstall dist test clean

all: $(LIB)

$(LIB): Cargo.toml Cargo.lock build.rs $(shell find src -name '*.rs')
	cargo build --lib $(if $(filter release,$(PROFILE)),--release,)

install: $(LIB)
	install -d $(DESTDIR)$(LIB_DIR) $(DESTDIR)$(INC_DIR)
	install -m 0644 $(LIB) $(DESTDIR)$(LIB_DIR)/libk8s_disc.so.$(VERSION)
	$(MAKE) --no-print-directory strip-installed SO=$(DESTDIR)$(LIB_DIR)/libk8s_disc.so.$(VERSION)
	ln -sf libk8s_disc.so.$(VERSION) $(DESTDIR)$(LIB_DIR)/libk8s_disc.so.$(ABI)
	ln -sf libk8s_disc.so.$(ABI) $(DESTDIR)$(LIB_DIR)/libk8s_disc.so
	install -m 0644 include/k8s_disc.h $(DESTDIR)$(INC_DIR)/k8s_disc.h
	for f in $(LUA_FILES); do \
		install -d $(DESTDIR)$(LUA_DIR)/$$(dirname $$f) && install -m 0644 lua/$$f $(DESTDIR)$(LUA_DIR)/$$f || exit 1; \
	done

# SO: the installed library. The debug link names the file only; gdb finds it in LIB_DIR/.debug (or under
# /usr/lib/debug/LIB_DIR when DEBUG_DIR is set there).
strip-installed:
ifeq ($(DEBUG_INFO),split)
	install -d $(DEBUG_DESTDIR)$(DEBUG_DIR)
	objcopy --only-keep-debug $(SO) $(DEBUG_DESTDIR)$(DEBUG_DIR)/libk8s_disc.so.$(VERSION).debug
	chmod 0644 $(DEBUG_DESTDIR)$(DEBUG_DIR)/libk8s_disc.so.$(VERSION).debug
	objcopy --strip-debug --strip-unneeded \
		--add-gnu-debuglink=$(DEBUG_DESTDIR)$(DEBUG_DIR)/libk8s_disc.so.$(VERSION).debug $(SO)
else ifeq ($(DEBUG_INFO),drop)
	objcopy --strip-debug --strip-unneeded $(SO)
else ifneq ($(DEBUG_INFO),keep)
	$(error DEBUG_INFO must be split, drop or keep, not "$(DEBUG_INFO)")
endif

uninstall:
	rm -f $(DEBUG_DESTDIR)$(DEBUG_DIR)/libk8s_disc.so.$(VERSION).debug
	rm -f $(DESTDIR)$(LIB_DIR)/libk8s_disc.so $(DESTDIR)$(LIB_DIR)/libk8s_disc.so.$(ABI) \
		$(DESTDIR)$(LIB_DIR)/libk8s_disc.so.$(VERSION) $(DESTDIR)$(INC_DIR)/k8s_disc.h
	for f in $(LUA_FILES); do rm -f $(DESTDIR)$(LUA_DIR)/$$f; done

dist: $(LIB)
	rm -rf $(DIST)
	rm -rf target/dist/dbgsym
	$(MAKE) install PREFIX=/ DESTDIR=$(CURDIR)/$(DIST) LIB_DIR=/lib LUA_DIR=/lua INC_DIR=/include \
		DEBUG_DESTDIR=$(CURDIR)/target/dist/dbgsym/$(notdir $(DIST))
	cp README.md $(DIST)/
	cp -r docs $(DIST)/
	tar czf $(DIST).tar.gz -C target/dist $(notdir $(DIST))
	@echo $(DIST).tar.gz
	@if [ -d target/dist/dbgsym ]; then \
		tar czf $(DIST)-dbgsym.tar.gz -C target/dist/dbgsym $(notdir $(DIST)) && echo $(DIST)-dbgsym.tar.gz; fi

test:
	./scripts/test.sh

clean:
	cargo clean
