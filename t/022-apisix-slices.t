# APISIX's t/kubernetes/discovery/kubernetes3.t and kubernetes4.t (EndpointSlices, watch_endpoint_slices: true)
# against this project's adapter and the fake API server, plus the correct behaviour where APISIX has bugs
# there: `ready` unset counts as ready, and an address in two slices is served once.

use lib 't/lib';
use K8sDiscTest;
use IO::Socket::INET ();

master_on();
workers(2);
repeat_each(1);
no_shuffle();
log_level('info');

$ENV{KUBERNETES_SERVICE_HOST} = '127.0.0.1';
$ENV{KUBERNETES_SERVICE_PORT} = fake_api_port();
$ENV{KUBERNETES_CLIENT_TOKEN} = 'env-token';

# A port nobody listens on (taken from the kernel, then released).
{
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
        or die "free port: $!";
    $ENV{TEST_NGINX_CLOSED_PORT} = $s->sockport;
    close $s;
}

sub put_slice {
    my ($ns, $name, $svc, $endpoints, $ports, $type) = @_;
    my $path = "/apis/discovery.k8s.io/v1/namespaces/$ns/endpointslices";
    my $obj = {
        apiVersion => 'discovery.k8s.io/v1', kind => 'EndpointSlice',
        metadata => { name => $name, namespace => $ns, labels => { 'kubernetes.io/service-name' => $svc } },
        addressType => $type // 'IPv4', endpoints => $endpoints, ports => $ports,
    };
    my $st = fake_api('PUT', "$path/$name", $obj);
    $st = fake_api('POST', $path, $obj) if $st == 404;
    die "slice $ns/$name: $st" unless $st == 200 || $st == 201;
}

# kubernetes3.t's slices, plus the endpoints APISIX gets wrong: in each namespace the slice service-a-epslice1
# has 10.0.0.1/.2 ready, 20.0.0.1/.2 not ready, 30.0.0.1 with "conditions": {} and 30.0.0.2 without conditions
# (both "ready unknown", which Kubernetes says to treat as ready); ports p1 5001, p2 5002, p3 5003.
sub seed_slices {
    for my $ns ('ns-a', 'ns-b', 'ns-c') {
        put_slice($ns, 'service-a-epslice1', 'service-a', [
            { addresses => ['10.0.0.1'], conditions => { ready => JSON::PP::true() } },
            { addresses => ['10.0.0.2'], conditions => { ready => JSON::PP::true() } },
            { addresses => ['20.0.0.1'], conditions => { ready => JSON::PP::false() } },
            { addresses => ['20.0.0.2'], conditions => { ready => JSON::PP::false() } },
            { addresses => ['30.0.0.1'], conditions => {} },
            { addresses => ['30.0.0.2'] },
        ], [ { name => 'p1', port => 5001 }, { name => 'p2', port => 5002 }, { name => 'p3', port => 5003 } ]);
    }
}
seed_slices();

# `--- discovery_conf` (a Lua table literal) is APISIX's discovery.kubernetes. Without it: `--- mode: single`
# gives one cluster, otherwise the two clusters "first" and "second"; both with `--- first_extra` added to the
# (first) cluster. Slices are always watched.
add_block_preprocessor(sub {
    my $block = shift;
    return if defined $block->http_config || !defined $block->config;
    my $conf = $block->discovery_conf;
    my $extra = $block->first_extra // '';
    my $fake = 'service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" }';
    if (!defined $conf && ($block->mode // '') =~ /single/) {
        $conf = "{ $fake, client = { token = \"t\" }, shared_size = \"1m\", watch_endpoint_slices = true, $extra }";
    } elsif (!defined $conf) {
        $conf = <<_EOC_;
{
            { id = "first", $fake, client = { token = "t" }, shared_size = "1m", watch_endpoint_slices = true,
              $extra },
            { id = "second", $fake, client = { token = "t" }, shared_size = "1m", watch_endpoint_slices = true },
        }
_EOC_
    }
    $block->set_value('http_config', apisix_http_config($conf));
});

plan tests => 36;

run_tests();

__DATA__

=== TEST 1: ready endpoints and those with ready unset are served; ready=false ones are not
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            local names = { "ns-a/service-a:p1", "ns-a/service-a:p2", "ns-b/service-a:p1",
                            "ns-b/service-a:p3", "ns-c/service-a:p1", "ns-c/service-a:p2" }
            a.say_counts("first", names, "4 4 4 4 4 4")
            a.say_counts("second", names, "4 4 4 4 4 4")
            ngx.say(a.hosts("first/ns-a/service-a:p1"))
            ngx.say(a.hosts("second/ns-c/service-a:p3"))
        }
    }
--- request
GET /t
--- response_body
first: 4 4 4 4 4 4
second: 4 4 4 4 4 4
10.0.0.1:5001 10.0.0.2:5001 30.0.0.1:5001 30.0.0.2:5001
10.0.0.1:5003 10.0.0.2:5003 30.0.0.1:5003 30.0.0.2:5003
--- no_error_log
[error]



=== TEST 2: host, port and token from the environment
--- discovery_conf
{ service = { schema = "http", host = "${KUBERNETES_SERVICE_HOST}", port = "${KUBERNETES_SERVICE_PORT}" },
  client = { token = "${KUBERNETES_CLIENT_TOKEN}" }, watch_endpoint_slices = true, shared_size = "1m" }
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            a.say_counts("", { "ns-a/service-a:p1", "ns-b/service-a:p2", "ns-c/service-a:p3" }, "4 4 4")
        }
    }
--- request
GET /t
--- response_body
single: 4 4 4
--- no_error_log
[error]



=== TEST 3: namespace_selector equal ns-a on "first"; "second" unfiltered
--- first_extra
namespace_selector = { equal = "ns-a" }
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            local names = { "ns-a/service-a:p1", "ns-a/service-a:p2", "ns-b/service-a:p1",
                            "ns-b/service-a:p2", "ns-c/service-a:p1", "ns-c/service-a:p2" }
            a.say_counts("first", names, "4 4 0 0 0 0")
            a.say_counts("second", names, "4 4 4 4 4 4")
        }
    }
--- request
GET /t
--- response_body
first: 4 4 0 0 0 0
second: 4 4 4 4 4 4
--- no_error_log
[error]



=== TEST 4: dump in multi-cluster mode: APISIX's shape, one item per cluster id, values are JSON strings, tokens masked
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            local t = require("k8s_test")
            a.say_counts("second", { "ns-c/service-a:p3" }, "4")
            local d, values, all_strings = a.dump()
            local ids = {}
            for i, item in ipairs(d.endpoints) do ids[i] = item.id end
            table.sort(ids)
            ngx.say("ids: ", table.concat(ids, " "))
            ngx.say("values are strings: ", all_strings)
            ngx.say("tokens: ", d.config[1].client.token, " ", d.config[2].client.token)
            ngx.say("config ids: ", d.config[1].id, " ", d.config[2].id)
            local h = function(n) return n.host .. ":" .. n.port .. "/" .. n.weight end
            for _, id in ipairs({"first", "second"}) do
                local v = values[id]["ns-b/service-a"]
                ngx.say(id, " ns-b/service-a p2: ", h(v.p2[1]), " ", h(v.p2[2]), " ", h(v.p2[3]), " ", h(v.p2[4]),
                        " (", #v.p2, ")")
                local names = {}
                for name in pairs(values[id]) do names[#names + 1] = name end
                table.sort(names)
                ngx.say(id, " services: ", table.concat(names, " "))
            end
        }
    }
--- request
GET /t
--- response_body
second: 4
ids: first second
values are strings: true
tokens: ****** ******
config ids: first second
first ns-b/service-a p2: 10.0.0.1:5002/50 10.0.0.2:5002/50 30.0.0.1:5002/50 30.0.0.2:5002/50 (4)
first services: ns-a/service-a ns-b/service-a ns-c/service-a
second ns-b/service-a p2: 10.0.0.1:5002/50 10.0.0.2:5002/50 30.0.0.1:5002/50 30.0.0.2:5002/50 (4)
second services: ns-a/service-a ns-b/service-a ns-c/service-a
--- no_error_log
[error]



=== TEST 5: dump in single-cluster mode: one item without an id, every port of a service in its value
--- mode: single
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            local t = require("k8s_test")
            a.say_counts("", { "ns-a/service-a:p1" }, "4")
            local d, values, all_strings = a.dump()
            ngx.say("items: ", #d.endpoints, ", id: ", tostring(d.endpoints[1].id))
            ngx.say("values are strings: ", all_strings)
            ngx.say("token: ", d.config.client.token, ", slices: ", tostring(d.config.watch_endpoint_slices))
            local v = values[""]["ns-a/service-a"]
            local ports = {}
            for p, nodes in pairs(v) do ports[#ports + 1] = p .. "=" .. #nodes end
            table.sort(ports)
            ngx.say("ns-a/service-a: ", table.concat(ports, " "))
            local expect = { {host = "10.0.0.1", port = 5001, weight = 50}, {host = "10.0.0.2", port = 5001, weight = 50},
                             {host = "30.0.0.1", port = 5001, weight = 50}, {host = "30.0.0.2", port = 5001, weight = 50} }
            ngx.say("p1 nodes as expected: ", t.same(v.p1, expect))
        }
    }
--- request
GET /t
--- response_body
single: 4
items: 1, id: nil
values are strings: true
token: ******, slices: true
ns-a/service-a: p1=4 p2=4 p3=4
p1 nodes as expected: true
--- no_error_log
[error]



=== TEST 6: not ready while one cluster's API server is unreachable ("second" on a closed port)
--- discovery_conf
{
    { id = "first", service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" },
      client = { token = "t" }, shared_size = "1m", watch_endpoint_slices = true },
    { id = "second", service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_CLOSED_PORT" },
      client = { token = "t" }, shared_size = "1m", watch_endpoint_slices = true },
}
--- config
    location = /t {
        content_by_lua_block {
            local k8s = require("apisix.discovery.kubernetes")
            local t = require("k8s_test")
            -- "first" lists and serves...
            ngx.say("first: ", t.counts({ "first/ns-a/service-a:p1" }, "4", 5, k8s.nodes))
            -- ...but the module stays not ready while "second" cannot connect.
            ngx.sleep(1)
            local ok, err = k8s.check_discovery_ready()
            ngx.say("ready: ", ok, ", ", err)
            ngx.say("second: ", tostring(k8s.nodes("second/ns-a/service-a:p1")))
            local s = require("apisix_t").status("second")
            ngx.say("second status: ready=", s.ready, ", error logged: ", s.last_error ~= nil)
        }
    }
--- request
GET /t
--- response_body
first: 4
ready: false, kubernetes discovery not ready
second: nil
second status: ready=false, error logged: true
--- error_log
cluster second: list EndpointSlice failed: connection error



=== TEST 7: ready once every cluster has listed
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            ngx.say("ready: ", a.wait_ready(5))
            ngx.say("ready again: ", (require("apisix.discovery.kubernetes").check_discovery_ready()))
        }
    }
--- request
GET /t
--- response_body
ready: true
ready again: true
--- no_error_log
[error]



=== TEST 8: slices aggregated per service (multi-cluster): 3, add a slice of 2 -> 5, delete it -> 3, scale in -> 2, up -> 3
--- init
main::put_slice('ns-a', 'service-a-epslice1', 'service-a',
    [ map { { addresses => ["10.0.0.$_"], conditions => { ready => JSON::PP::true() } } } 1 .. 3 ],
    [ { name => 'p1', port => 5001 } ]);
fake_api('DELETE', '/apis/discovery.k8s.io/v1/namespaces/ns-a/endpointslices/service-a-epslice2');
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            local t = require("k8s_test")
            local port = $TEST_NGINX_FAKE_API_PORT
            local p1 = {{name = "p1", port = 5001}}
            local function ready(ips)
                local eps = {}
                for i, ip in ipairs(ips) do eps[i] = {addresses = {ip}, ready = true} end
                return eps
            end
            local names = { "ns-a/service-a:p1" }
            a.say_counts("first", names, "3")
            t.apply(port, a.slice("ns-a", "service-a-epslice2", "service-a", ready({"10.0.0.4", "10.0.0.5"}), p1))
            a.say_counts("first", names, "5")
            ngx.say(a.hosts("first/ns-a/service-a:p1"))
            t.delete(port, "EndpointSlice", "ns-a", "service-a-epslice2")
            a.say_counts("first", names, "3")
            t.apply(port, a.slice("ns-a", "service-a-epslice1", "service-a", ready({"10.0.0.1", "10.0.0.2"}), p1))
            a.say_counts("first", names, "2")
            t.apply(port, a.slice("ns-a", "service-a-epslice1", "service-a",
                                  ready({"10.0.0.1", "10.0.0.2", "10.0.0.3"}), p1))
            a.say_counts("first", names, "3")
            a.say_counts("second", names, "3")
        }
    }
--- request
GET /t
--- response_body
first: 3
first: 5
10.0.0.1:5001 10.0.0.2:5001 10.0.0.3:5001 10.0.0.4:5001 10.0.0.5:5001
first: 3
first: 2
first: 3
second: 3
--- no_error_log
[error]



=== TEST 9: slices aggregated per service (single-cluster): the same steps
--- mode: single
--- init
main::put_slice('ns-a', 'service-a-epslice1', 'service-a',
    [ map { { addresses => ["10.0.0.$_"], conditions => { ready => JSON::PP::true() } } } 1 .. 3 ],
    [ { name => 'p1', port => 5001 } ]);
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            local t = require("k8s_test")
            local port = $TEST_NGINX_FAKE_API_PORT
            local p1 = {{name = "p1", port = 5001}}
            local function ready(ips)
                local eps = {}
                for i, ip in ipairs(ips) do eps[i] = {addresses = {ip}, ready = true} end
                return eps
            end
            local names = { "ns-a/service-a:p1" }
            a.say_counts("", names, "3")
            t.apply(port, a.slice("ns-a", "service-a-epslice2", "service-a", ready({"10.0.0.4", "10.0.0.5"}), p1))
            a.say_counts("", names, "5")
            t.delete(port, "EndpointSlice", "ns-a", "service-a-epslice2")
            a.say_counts("", names, "3")
            t.apply(port, a.slice("ns-a", "service-a-epslice1", "service-a", ready({"10.0.0.1", "10.0.0.2"}), p1))
            a.say_counts("", names, "2")
            t.apply(port, a.slice("ns-a", "service-a-epslice1", "service-a",
                                  ready({"10.0.0.1", "10.0.0.2", "10.0.0.3"}), p1))
            a.say_counts("", names, "3")
        }
    }
--- request
GET /t
--- response_body
single: 3
single: 5
single: 3
single: 2
single: 3
--- no_error_log
[error]



=== TEST 10: an address present in two slices of a service is served once (APISIX serves it twice)
--- mode: single
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            local t = require("k8s_test")
            local port = $TEST_NGINX_FAKE_API_PORT
            local p1 = {{name = "p1", port = 5001}}
            t.apply(port, a.slice("ns-b", "dup-1", "dup", {{addresses = {"10.0.0.1"}, ready = true},
                                                          {addresses = {"10.0.0.3"}, ready = true}}, p1))
            t.apply(port, a.slice("ns-b", "dup-2", "dup", {{addresses = {"10.0.0.3"}, ready = true},
                                                          {addresses = {"10.0.0.9"}, ready = true}}, p1))
            a.say_counts("", { "ns-b/dup:p1" }, "3")
            ngx.say(a.hosts("ns-b/dup:p1"))
            -- Removing one of the two copies keeps the address.
            t.delete(port, "EndpointSlice", "ns-b", "dup-2")
            a.say_counts("", { "ns-b/dup:p1" }, "2")
            ngx.say(a.hosts("ns-b/dup:p1"))
        }
    }
--- request
GET /t
--- response_body
single: 3
10.0.0.1:5001 10.0.0.3:5001 10.0.0.9:5001
single: 2
10.0.0.1:5001 10.0.0.3:5001
--- no_error_log
[error]



=== TEST 11: deleting the last slice: nodes() nil for the port, and the service gone from the dump (APISIX keeps it as {})
--- mode: single
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            local t = require("k8s_test")
            local k8s = require("apisix.discovery.kubernetes")
            local port = $TEST_NGINX_FAKE_API_PORT
            t.apply(port, a.slice("ns-b", "gone-1", "gone", {{addresses = {"10.0.0.7"}, ready = true}},
                                  {{name = "p1", port = 5001}}))
            a.say_counts("", { "ns-b/gone:p1" }, "1")
            t.delete(port, "EndpointSlice", "ns-b", "gone-1")
            local ok = t.wait_until(function() return k8s.nodes("ns-b/gone:p1") == nil end, 5)
            ngx.say("nodes after delete: ", ok and "nil" or "still there")
            local _, values = a.dump()
            local v = values[""]["ns-b/gone"]
            ngx.say("in dump: ", v ~= nil)
        }
    }
--- request
GET /t
--- response_body
single: 1
nodes after delete: nil
in dump: false
--- no_error_log
[error]



=== TEST 12: IPv6 slices are served (no brackets); FQDN slices are ignored; "endpoints": null gives no nodes
--- mode: single
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            local t = require("k8s_test")
            local fake = require("fake_api")
            local port = $TEST_NGINX_FAKE_API_PORT
            local p1 = {{name = "p1", port = 5001}}
            t.apply(port, a.slice("ns-b", "v6-1", "v6", {{addresses = {"fd00::2"}, ready = true},
                                                        {addresses = {"fd00::1"}, ready = true}}, p1, "IPv6"))
            -- The same service also has an FQDN slice: its names must never become upstream hosts.
            t.apply(port, a.slice("ns-b", "v6-fqdn", "v6", {{addresses = {"web.example.com"}, ready = true}},
                                  p1, "FQDN"))
            t.apply(port, a.slice("ns-b", "fqdn-1", "fqdn", {{addresses = {"api.example.com"}, ready = true}},
                                  p1, "FQDN"))
            -- A slice as the API server stores an empty one.
            local st = fake.request(port, "POST", "/apis/discovery.k8s.io/v1/namespaces/ns-b/endpointslices",
                '{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"name":"empty-1",'
                .. '"labels":{"kubernetes.io/service-name":"empty"}},"addressType":"IPv4","endpoints":null,'
                .. '"ports":null}')
            ngx.say("empty slice created: ", st)
            -- A later change proves the earlier events were all processed.
            t.apply(port, a.slice("ns-b", "marker-1", "marker", {{addresses = {"10.9.9.9"}, ready = true}}, p1))
            a.say_counts("", { "ns-b/marker:p1", "ns-b/v6:p1" }, "1 2")
            ngx.say("v6: ", a.hosts("ns-b/v6:p1"))
            ngx.say("fqdn: ", a.hosts("ns-b/fqdn:p1"))
            ngx.say("empty: ", a.hosts("ns-b/empty:p1"))
        }
    }
--- request
GET /t
--- response_body
empty slice created: 201
single: 1 2
v6: fd00::1:5001 fd00::2:5001
fqdn: nil
empty: nil
--- no_error_log
[error]
