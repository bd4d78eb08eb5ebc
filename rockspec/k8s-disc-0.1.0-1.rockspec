-- LuaRocks package: builds the Rust library with cargo and installs it beside the Lua modules.
--   luarocks make rockspec/k8s-disc-0.1.0-1.rockspec [--tree DIR]     (from a checkout; needs cargo on PATH)
-- K8S_DISC_LIB=/path/to/libk8s_disc.so installs that already built library instead of running cargo.
--
-- Installed: the library as lib/lua/5.1/k8s_disc.so and the Lua modules under share/lua/5.1/, both on the tree's
-- package paths (`luarocks path`), where require("resty.k8s_disc") finds them.
package = "k8s-disc"
version = "0.1.0-1"
source = {
   url = "git+https://example.invalid/k8s-disc.git",
   tag = "v0.1.0",
}
description = {
   summary = "Kubernetes service discovery for OpenResty and Apache APISIX",
   detailed = [[
      List-watches Endpoints or EndpointSlices from the Kubernetes API server into shared memory (a Rust
      library loaded through LuaJIT FFI) and answers nodes("ns/name:port") in every nginx worker. A drop-in
      replacement for APISIX's kubernetes discovery, usable from plain OpenResty.
   ]],
   license = "Apache-2.0",
}
dependencies = {
   "lua == 5.1",
}
build = {
   type = "command",
   -- The library is staged under target/rock/ so that the install table below names one fixed path whichever
   -- way it was obtained.
   build_command = [[
      set -e
      if [ -n "$K8S_DISC_LIB" ]; then
         src="$K8S_DISC_LIB"
      else
         cargo build --release --lib
         src=target/release/libk8s_disc.so
      fi
      mkdir -p target/rock
      cp "$src" target/rock/k8s_disc.so
   ]],
   install = {
      lua = {
         ["resty.k8s_disc"] = "lua/resty/k8s_disc.lua",
         ["resty.k8s_disc.native"] = "lua/resty/k8s_disc/native.lua",
         ["resty.k8s_disc.decode"] = "lua/resty/k8s_disc/decode.lua",
         ["apisix.discovery.kubernetes.init"] = "lua/apisix/discovery/kubernetes/init.lua",
         ["apisix.discovery.kubernetes.schema"] = "lua/apisix/discovery/kubernetes/schema.lua",
         ["apisix.discovery.kubernetes.api"] = "lua/apisix/discovery/kubernetes/api.lua",
         ["apisix.plugins.k8s-disc-metrics"] = "lua/apisix/plugins/k8s-disc-metrics.lua",
      },
      -- Found through package.cpath as "k8s_disc" by resty.k8s_disc.
      lib = {
         k8s_disc = "target/rock/k8s_disc.so",
      },
   },
}
