# The operator's views: Prometheus metrics and the per-service lookup, through the OpenResty module on locations
# of one's own, through the APISIX adapter's control API routes, and through the k8s-disc-metrics plugin's public
# API.

use lib 't/lib';
use K8sDiscTest;

master_on();
workers(2);
repeat_each(1);
no_shuffle();
log_level('info');

fake_api('POST', '/api/v1/namespaces/ns-a/endpoints', {
    metadata => { name => 'web' },
    subsets  => [{ addresses => [{ ip => '10.0.0.1' }, { ip => '10.0.0.2' }],
                   ports => [{ name => 'http', port => 8080 }, { port => 9090 }] }],
});

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', K8sDiscTest::apisix_http_config(<<'_EOC_')) unless defined $block->http_config;
{ service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" },
  client = { token = "t" }, shared_size = "1m" }
_EOC_
});

plan tests => 18;

run_tests();

__DATA__

=== TEST 1: metrics on a location of one's own: the same figures in every worker, moving with the watch
--- config
    location = /metrics {
        content_by_lua_block {
            ngx.header["Content-Type"] = "text/plain; version=0.0.4"
            ngx.print(require("resty.k8s_disc").metrics())
        }
    }
    location = /t {
        content_by_lua_block {
            local t = require("k8s_test")
            assert(t.wait_ready(5))
            local function metric(text, series)
                return tonumber(text:match("\n" .. series:gsub("%p", "%%%0") .. " ([^\n]+)"))
            end
            local function scrape()
                local sock = ngx.socket.tcp()
                assert(sock:connect("127.0.0.1", ngx.var.server_port))
                sock:send("GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
                local resp = sock:receive("*a")
                sock:close()
                return resp:match("\r\n\r\n(.*)$")
            end
            local before = scrape()
            ngx.say("ready: ", metric(before, 'k8s_disc_ready{cluster=""}'))
            ngx.say("services: ", metric(before, 'k8s_disc_services{cluster=""}'))
            ngx.say("endpoints: ", metric(before, 'k8s_disc_endpoints{cluster=""}'))
            ngx.say("lists: ", metric(before, 'k8s_disc_lists_total{cluster=""}'))
            t.apply($TEST_NGINX_FAKE_API_PORT, t.endpoints("ns-a", "web", {"10.0.0.3"}, {{name = "http", port = 8080}}))
            assert(t.wait_until(function() return t.count("ns-a/web:http") == 1 end, 5))
            local after = scrape()
            local series = 'k8s_disc_events_total{cluster="",type="modified"}'
            ngx.say("modified events counted: ", metric(after, series) - metric(before, series))
            ngx.say("propagation measured: ",
                    metric(after, 'k8s_disc_propagation_seconds_count{cluster=""}') >= 1)
            ngx.say("endpoints after: ", metric(after, 'k8s_disc_endpoints{cluster=""}'))
            ngx.say("families typed: ", select(2, after:gsub("# TYPE ", "")) >= 12)
        }
    }
--- request
GET /t
--- response_body
ready: 1
services: 1
endpoints: 4
lists: 1
modified events counted: 1
propagation measured: true
endpoints after: 1
families typed: true
--- no_error_log
[error]



=== TEST 2: the lookup says what the gateway sees, and why not
--- config
    location = /t {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local t = require("k8s_test")
            assert(t.wait_ready(5))
            local v = k8s_disc.lookup("ns-a/web:http")
            ngx.say(v.found, " ", #v.nodes, " ", v.nodes[1].host, ":", v.nodes[1].port, " changed ",
                    ngx.time() - v.changed_at < 60)
            v = k8s_disc.lookup("ns-a/web:8080")
            ngx.say(v.found, " ", v.reason, " ", table.concat(v.ports, ","))
            v = k8s_disc.lookup("web.ns-a.svc.cluster.local:80")
            ngx.say(v.found, " ", v.reason)
            v = k8s_disc.lookup("ns-a/nope:http")
            ngx.say(v.found, " ", v.reason:match("^[^:]+"))
        }
    }
--- request
GET /t
--- response_body
true 1 10.0.0.3:8080 changed true
false service ns-a/web has no port "8080" (ports are named by the Service port's name, or its number when it is unnamed) http
false names are namespace/name:port (the port's name, or its number when unnamed)
false service ns-a/nope not found
--- no_error_log
[error]



=== TEST 3: the APISIX adapter's control API routes, called as APISIX's control router calls them
--- config
    location = /v1/discovery/kubernetes/lookup {
        content_by_lua_block {
            local adapter = require("apisix.discovery.kubernetes")
            for _, route in ipairs(adapter.control_api()) do
                if route.uris[1] == ngx.var.uri then
                    local code, body = route.handler()
                    ngx.status = code
                    ngx.say(type(body) == "table" and require("cjson").encode(body.reason or body.nodes[1].host) or body)
                end
            end
        }
    }
    location = /t {
        content_by_lua_block {
            local adapter = require("apisix.discovery.kubernetes")
            local t = require("k8s_test")
            assert(t.wait_ready(5))
            local uris = {}
            for _, route in ipairs(adapter.control_api()) do
                uris[#uris + 1] = route.methods[1] .. " " .. route.uris[1]
            end
            ngx.say(table.concat(uris, ", "))
            for _, route in ipairs(adapter.control_api()) do
                if route.uris[1]:find("metrics", 1, true) then
                    local code, body = route.handler()
                    ngx.say(code, " ", body:find('k8s_disc_ready{cluster=""} 1', 1, true) ~= nil)
                end
            end
        }
    }
--- request eval
["GET /t", "GET /v1/discovery/kubernetes/lookup?service=ns-a/web:http", "GET /v1/discovery/kubernetes/lookup?service=ns-a/web:80"]
--- response_body eval
["GET /v1/discovery/kubernetes/lookup, GET /v1/discovery/kubernetes/metrics\n200 true\n",
"\"10.0.0.3\"\n",
"\"service ns-a\\/web has no port \\\"80\\\" (ports are named by the Service port's name, or its number when it is unnamed)\"\n"]
--- error_code eval
[200, 200, 404]



=== TEST 4: the k8s-disc-metrics plugin's public API, called as APISIX's API router calls it, on its configured URI
--- config
    location /apisix/ {
        content_by_lua_block {
            for _, route in ipairs(require("apisix.plugins.k8s-disc-metrics").api()) do
                if route.uri == ngx.var.uri and route.methods[1] == ngx.req.get_method() then
                    local code, body = route.handler({})
                    ngx.status = code
                    ngx.print(body)
                    return
                end
            end
            ngx.exit(404)
        }
    }
    location = /t {
        content_by_lua_block {
            local plugin = require("apisix.plugins.k8s-disc-metrics")
            local config_local = require("apisix.core.config_local")
            assert(require("k8s_test").wait_ready(5))
            local routes = plugin.api()
            local code, body = routes[1].handler({})
            local content_type = ngx.header["Content-Type"]
            ngx.say(plugin.name, " ", plugin.version, " ", plugin.schema.type, " ", type(plugin.priority))
            ngx.say(#routes, " ", routes[1].methods[1], " ", routes[1].uri)
            ngx.say(code, " ", content_type, " ", body:find('\nk8s_disc_ready{cluster=""} 1\n', 1, true) ~= nil)
            config_local.set_plugin_attr("k8s-disc-metrics", { export_uri = "/apisix/metrics/k8s" })
            ngx.say(plugin.api()[1].uri)
            config_local.set_plugin_attr("k8s-disc-metrics", { export_uri = "metrics" })
            ngx.say(select(2, pcall(plugin.api)))
            config_local.set_plugin_attr("k8s-disc-metrics", nil)
        }
    }
--- request eval
["GET /t", "GET /apisix/k8s-disc/metrics"]
--- response_body_like eval
["^k8s-disc-metrics 0.1 object number
1 GET /apisix/k8s-disc/metrics
200 text/plain; version=0.0.4 true
/apisix/metrics/k8s
k8s-disc: plugin_attr.k8s-disc-metrics.export_uri must be a path starting with /, got metrics
\$",
qr/^# HELP k8s_disc_ready .*\nk8s_disc_ready\{cluster=""\} 1\n/s]
--- error_code eval
[200, 200]
--- no_error_log
[error]
