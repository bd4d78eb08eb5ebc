-- LuaRocks package: builds the Rust library with cargo and installs it beside the Lua modules.
--   luarocks make rockspec/k8s-disc-0.1.0-1.rockspec      (from a checkout; needs cargo on PATH)
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
   build_command = "cargo build --release --lib",
   install = {
      lua = {
         ["resty.k8s_disc"] = "lua/resty/k8s_disc.lua",
         ["resty.k8s_disc.native"] = "lua/resty/k8s_disc/native.lua",
         ["resty.k8s_disc.decode"] = "lua/resty/k8s_disc/decode.lua",
         ["apisix.discovery.kubernetes.init"] = "lua/apisix/discovery/kubernetes/init.lua",
         ["apisix.discovery.kubernetes.schema"] = "lua/apisix/discovery/kubernetes/schema.lua",
      },
      -- Found through package.cpath as "k8s_disc" by resty.k8s_disc.
      lib = {
         k8s_disc = "target/release/libk8s_disc.so",
      },
   },
}
