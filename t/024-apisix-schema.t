# lua/apisix/discovery/kubernetes/schema.lua, the schema APISIX checks config.yaml against when nginx starts (its
# CLI checks the same block with APISIX's own schema, see the README): it must accept every config the library
# accepts (or APISIX would refuse to start) and reject what is plainly invalid; and it must declare exactly the
# library's keys with the library's defaults (APISIX applies the schema's defaults itself, so a default that
# drifted there would silently override the library's).

use lib 't/lib';
use K8sDiscTest fake_api => 0;

repeat_each(1);
no_shuffle();

plan tests => 6;

run_tests();

__DATA__

=== TEST 1: accepted and rejected configs
--- config
    location = /t {
        content_by_lua_block {
            local schema = require("apisix.discovery.kubernetes.schema")
            local v = require("schema_lite")
            local accepted = {
                {},
                { service = {} },
                { client = { token = "${KUBERNETES_CLIENT_TOKEN}" } },
                { service = { schema = "http", host = "10.0.0.1", port = "6443" }, client = { token_file = "/t" } },
                { service = { host = "fd00:10:96::1", port = 443 }, client = { token = "abc.def-ghi_jkl=" } },
                { service = { host = "API.Example.COM", port = "${PORT2}", ssl_verify = false } },
                { namespace_selector = { equal = "ns-a" }, label_selector = "a=b,!c", default_weight = 0 },
                { namespace_selector = { match = { "ns-[ab]", "prod" } }, shared_size = "1000m" },
                { watch_endpoint_slices = true, namespace_selector = { not_match = { "kube-.*" } } },
                { client = { token_file = "/t", ca_file = "/ca.crt", cert_file = "/c.crt", key_file = "/c.key" } },
                { kubeconfig = "/etc/kube/config", context = "prod" },
                { watch_idle_timeout = 60, list_timeout = 600, max_staleness = 300, max_object_size = "4m" },
                { watch_endpoint_slices = true, topology = { mode = "prefer_zone", zone = "${NODE_ZONE}" } },
                { watch_endpoint_slices = true, topology = { mode = "hints", zone = "eu-west-1a" } },
                {
                    { id = "first", service = { host = "1.2.3.4", port = "6443" }, client = { token = "t" } },
                    { id = "mtls", service = { host = "h", port = 443 },
                      client = { ca_file = "/ca", cert_file = "/c", key_file = "/k" } },
                    { id = "kube", kubeconfig = "${KUBECONFIG}", context = "c" },
                    { id = string.rep("a", 64), service = { schema = "http", host = "h", port = 80 },
                      client = { token_file = "/t" }, default_weight = 7 },
                },
            }
            local rejected = {
                { service = { schema = "ftp" } },
                { service = { port = "0" } },
                { service = { port = "65536" } },
                { service = { host = "bad host" } },
                { default_weight = -1 },
                { default_weight = 1.5 },
                { shared_size = "64" },
                { namespace_selector = { equal = "a", not_equal = "b" } },
                { namespace_selector = { matches = { "a" } } },
                { namespace_selector = { match = {} } },
                { client = { token = "has spaces" } },
                { { service = { host = "h", port = "1" }, client = { token = "t" } } },
                { { id = "CLUSTER1", service = { host = "h", port = "1" }, client = { token = "t" } } },
                { { id = "c1", service = { host = "h", port = "1" }, client = { token = "t", token_file = "/t" } } },
                { { id = "c1", service = { host = "h" }, client = { token = "t" } } },
                { { id = "c1", service = { host = "h", port = "1" }, client = { cert_file = "/c" } } },
                { { id = "c1" } },
                { client = { ca_file = "" } },
                { kubeconfig = 7 },
                { watch_idle_timeout = 5 },
                { max_staleness = 0 },
                { list_timeout = "soon" },
                { max_object_size = 4 },
                { topology = { mode = "same_zone" } },
                { topology = { mode = "hints", zones = { "a" } } },
                { topology = "prefer_zone" },
            }
            local bad = 0
            for i, conf in ipairs(accepted) do
                local ok, err = v.validate(schema, conf)
                if not ok then bad = bad + 1; ngx.say("accepted #", i, " was rejected: ", err) end
            end
            for i, conf in ipairs(rejected) do
                if v.validate(schema, conf) then bad = bad + 1; ngx.say("rejected #", i, " was accepted") end
            end
            ngx.say("schema disagreements: ", bad)
            ngx.say("single-cluster defaults: ", schema.anyOf[1].default.service.schema, " ",
                    schema.anyOf[1].default.client.token_file)
        }
    }
--- request
GET /t
--- response_body
schema disagreements: 0
single-cluster defaults: https /var/run/secrets/kubernetes.io/serviceaccount/token
--- no_error_log
[error]



=== TEST 2: every key of the library's configuration table is a property, with the same default, and no other
--- config
    location = /t {
        content_by_lua_block {
            local cjson = require("cjson")
            local schema = require("apisix.discovery.kubernetes.schema")
            local fields = assert(require("resty.k8s_disc").config_fields())
            local roots = { single = schema.anyOf[1], multi = schema.anyOf[2].items }
            local problems, compared, known = {}, 0, {}
            local function problem(...) problems[#problems + 1] = table.concat({ ... }) end
            local function prop(root, name)
                local p = root
                for part in name:gmatch("[^.]+") do
                    p = p and p.properties and p.properties[part]
                end
                return p
            end
            local function same(mode, where, have, want)
                compared = compared + 1
                if want == cjson.null or have ~= want then
                    problem(mode, ": ", where, " defaults to ", tostring(have), ", the library to ", tostring(want))
                end
            end
            for _, f in ipairs(fields) do
                known[f.name] = true
                local outer, inner = f.name:match("^([^.]+)%.(.+)$")
                for _, mode in ipairs({ "single", "multi" }) do
                    local root = roots[mode]
                    local p = prop(root, f.name)
                    if f.name == "id" and mode == "single" then
                        if p then problem("single: id is a property") end
                    elseif not p then
                        problem(mode, ": no property ", f.name)
                    elseif p.default ~= nil then
                        same(mode, f.name, p.default, f.default)
                    end
                    -- Object defaults, e.g. single-cluster `service = {schema, host, port}`.
                    if outer then
                        local objects = { root.default and root.default[outer], prop(root, outer) and prop(root, outer).default }
                        for _, d in pairs(objects) do
                            if d[inner] ~= nil then same(mode, outer .. " default's " .. inner, d[inner], f.default) end
                        end
                    end
                end
            end
            local function walk(mode, props, prefix)
                for name, p in pairs(props) do
                    local full = prefix .. name
                    if not known[full] and not (p.properties and next(p.properties)) then
                        problem(mode, ": property ", full, " is not a key the library accepts")
                    end
                    if p.properties then walk(mode, p.properties, full .. ".") end
                end
            end
            for mode, root in pairs(roots) do walk(mode, root.properties, "") end
            table.sort(problems)
            for _, p in ipairs(problems) do ngx.say(p) end
            ngx.say("keys: ", #fields, ", defaults compared: ", compared >= 10, ", disagreements: ", #problems)
        }
    }
--- request
GET /t
--- response_body
keys: 27, defaults compared: true, disagreements: 0
--- no_error_log
[error]
