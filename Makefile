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

PROFILE ?= release
LIB     := target/$(PROFILE)/libk8s_disc.so
LUA_FILES := resty/k8s_disc.lua apisix/discovery/kubernetes/init.lua apisix/discovery/kubernetes/schema.lua \
             apisix/plugins/k8s-disc-metrics.lua
DIST    := target/dist/k8s-disc-$(VERSION)-linux-$(ARCH)

.PHONY: all install uninstall dist test clean

all: $(LIB)

$(LIB): Cargo.toml Cargo.lock build.rs $(shell find src -name '*.rs')
	cargo build --lib $(if $(filter release,$(PROFILE)),--release,)

install: $(LIB)
	install -d $(DESTDIR)$(LIB_DIR) $(DESTDIR)$(INC_DIR)
	install -m 0644 $(LIB) $(DESTDIR)$(LIB_DIR)/libk8s_disc.so.$(VERSION)
	ln -sf libk8s_disc.so.$(VERSION) $(DESTDIR)$(LIB_DIR)/libk8s_disc.so.$(ABI)
	ln -sf libk8s_disc.so.$(ABI) $(DESTDIR)$(LIB_DIR)/libk8s_disc.so
	install -m 0644 include/k8s_disc.h $(DESTDIR)$(INC_DIR)/k8s_disc.h
	for f in $(LUA_FILES); do \
		install -d $(DESTDIR)$(LUA_DIR)/$$(dirname $$f) && install -m 0644 lua/$$f $(DESTDIR)$(LUA_DIR)/$$f || exit 1; \
	done

uninstall:
	rm -f $(DESTDIR)$(LIB_DIR)/libk8s_disc.so $(DESTDIR)$(LIB_DIR)/libk8s_disc.so.$(ABI) \
		$(DESTDIR)$(LIB_DIR)/libk8s_disc.so.$(VERSION) $(DESTDIR)$(INC_DIR)/k8s_disc.h
	for f in $(LUA_FILES); do rm -f $(DESTDIR)$(LUA_DIR)/$$f; done

dist: $(LIB)
	rm -rf $(DIST)
	$(MAKE) install PREFIX=/ DESTDIR=$(CURDIR)/$(DIST) LIB_DIR=/lib LUA_DIR=/lua INC_DIR=/include
	cp README.md $(DIST)/
	cp -r docs $(DIST)/
	tar czf $(DIST).tar.gz -C target/dist $(notdir $(DIST))
	@echo $(DIST).tar.gz

test:
	./scripts/test.sh

clean:
	cargo clean
