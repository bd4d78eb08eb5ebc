#!/usr/bin/env bash
# Installs what k8s-disc needs to build and test on Debian (bookworm or later): nginx with the Lua module, the
# LuaJIT build OpenResty uses, lua-resty-core, cjson, the Perl modules the Test::Nginx-format suite runs on, and
# luarocks (the rockspec is installed into a temporary tree by t/026-packaging.t).
# Idempotent: installs only what is missing. Rust (cargo) must already be installed.
set -euo pipefail

packages=(nginx libnginx-mod-http-lua libluajit2-5.1-2 lua-resty-core lua-resty-lrucache lua-cjson
          libtest-base-perl libtext-diff-perl liblist-moreutils-perl libtest-longstring-perl liburi-perl
          libwww-perl libipc-run-perl curl make gcc g++ luarocks)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    # Do not let the package start a system nginx on :80; the project runs its own instances.
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then
        "${sudo_cmd[@]}" systemctl disable --now nginx >/dev/null 2>&1 || true
    fi
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] || { echo "setup: the nginx Lua module is missing" >&2; exit 1; }
echo "setup: ok"
