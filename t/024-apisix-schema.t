# lua/apisix/discovery/kubernetes/schema.lua, the schema APISIX's CLI checks config.yaml against: it must accept
# every config the library accepts (or APISIX would refuse to start) and reject what is plainly invalid.

use lib 't/lib';
use K8sDiscTest fake_api => 0;

repeat_each(1);
no_shuffle();

plan tests => 3;

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
