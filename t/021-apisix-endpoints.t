# APISIX's t/kubernetes/discovery/kubernetes2.t (core/v1 Endpoints) against this project's adapter and the fake
# API server: two clusters "first" and "second" (both this file's fake server), namespaces ns-a/ns-b/ns-c each
# with an Endpoints "ep" of two subsets, namespace and label selectors applied to "first" only, and scaling.

use lib 't/lib';
use K8sDiscTest;

master_on();
workers(2);
repeat_each(1);
no_shuffle();
log_level('info');

$ENV{KUBERNETES_SERVICE_HOST} = '127.0.0.1';
$ENV{KUBERNETES_SERVICE_PORT} = fake_api_port();
$ENV{KUBERNETES_CLIENT_TOKEN} = 'env-token';

# (Re)creates the three Endpoints exactly as kubernetes2.t's first block patches them: 10.0.0.1/.2 on p1:5001
# and 20.0.0.1/.2 on p2:5002; ns-c has the same ports without names. No labels.
sub seed_endpoints {
    for my $ns ('ns-a', 'ns-b', 'ns-c') {
        my $named = $ns ne 'ns-c';
        my $st = fake_api('PUT', "/api/v1/namespaces/$ns/endpoints/ep", {
            metadata => { name => 'ep', namespace => $ns },
            subsets  => [
                { addresses => [{ ip => '10.0.0.1' }, { ip => '10.0.0.2' }],
                  ports => [{ ($named ? (name => 'p1') : ()), port => 5001 }] },
                { addresses => [{ ip => '20.0.0.1' }, { ip => '20.0.0.2' }],
                  ports => [{ ($named ? (name => 'p2') : ()), port => 5002 }] },
            ],
        });
        die "seeding $ns/ep: $st" unless $st == 200 || $st == 201;
    }
}
seed_endpoints();

# `--- discovery_conf` (a Lua table literal) is APISIX's discovery.kubernetes; without it, the two clusters
# "first" and "second", with the Lua fields of `--- first_extra` added to "first".
add_block_preprocessor(sub {
    my $block = shift;
    return if defined $block->http_config || !defined $block->config;
    my $conf = $block->discovery_conf;
    if (!defined $conf) {
        my $extra = $block->first_extra // '';
        $conf = <<_EOC_;
{
            { id = "first", service = { schema = "http", host = "127.0.0.1", port = "\$TEST_NGINX_FAKE_API_PORT" },
              client = { token = "t" }, shared_size = "1m", $extra },
            { id = "second", service = { schema = "http", host = "127.0.0.1", port = "\$TEST_NGINX_FAKE_API_PORT" },
              client = { token = "t" }, shared_size = "1m" },
        }
_EOC_
    }
    $block->set_value('http_config', apisix_http_config($conf));
});

plan tests => 33;

run_tests();

__DATA__

=== TEST 1: all 12 queries (two clusters x three namespaces x two ports) give 2 nodes
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            a.say_counts("first", a.EP_NAMES, "2 2 2 2 2 2")
            a.say_counts("second", a.EP_NAMES, "2 2 2 2 2 2")
            ngx.say("first/ns-a/ep:p1 = ", a.hosts("first/ns-a/ep:p1"))
            ngx.say("second/ns-c/ep:5002 = ", a.hosts("second/ns-c/ep:5002"))
        }
    }
--- request
GET /t
--- response_body
first: 2 2 2 2 2 2
second: 2 2 2 2 2 2
first/ns-a/ep:p1 = 10.0.0.1:5001 10.0.0.2:5001
second/ns-c/ep:5002 = 20.0.0.1:5002 20.0.0.2:5002
--- no_error_log
[error]



=== TEST 2: host, port and token from the environment
--- discovery_conf
{
    { id = "first", service = { schema = "http", host = "${KUBERNETES_SERVICE_HOST}", port = "${KUBERNETES_SERVICE_PORT}" },
      client = { token = "${KUBERNETES_CLIENT_TOKEN}" }, shared_size = "1m" },
    { id = "second", service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" },
      client = { token = "t" }, shared_size = "1m" },
}
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            a.say_counts("first", a.EP_NAMES, "2 2 2 2 2 2")
            a.say_counts("second", a.EP_NAMES, "2 2 2 2 2 2")
        }
    }
--- request
GET /t
--- response_body
first: 2 2 2 2 2 2
second: 2 2 2 2 2 2
--- no_error_log
[error]



=== TEST 3: namespace_selector equal ns-a (first only; second unfiltered)
--- first_extra
namespace_selector = { equal = "ns-a" }
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            a.say_counts("first", a.EP_NAMES, "2 2 0 0 0 0")
            a.say_counts("second", a.EP_NAMES, "2 2 2 2 2 2")
            -- Unlike APISIX, "equal" lists and watches the namespaced URL (a namespaced Role is enough). The
            -- list is a streaming one: a watch request whose initial events are the list.
            local list, watch = false, false
            for _, r in ipairs(require("fake_api").stats($TEST_NGINX_FAKE_API_PORT).requests) do
                if r:find("^GET /api/v1/namespaces/ns%-a/endpoints%?") then
                    if r:find("watch=", 1, true) then watch = true end
                    if r:find("sendInitialEvents=true", 1, true) or not r:find("watch=", 1, true) then
                        list = true
                    end
                end
            end
            ngx.say("namespaced list: ", list, ", namespaced watch: ", watch)
        }
    }
--- request
GET /t
--- response_body
first: 2 2 0 0 0 0
second: 2 2 2 2 2 2
namespaced list: true, namespaced watch: true
--- no_error_log
[error]



=== TEST 4: namespace_selector not_equal leaves out exactly that namespace, in its cluster only
--- first_extra
namespace_selector = { not_equal = "ns-a" }
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            a.say_counts("first", a.EP_NAMES, "0 0 2 2 2 2")
            a.say_counts("second", a.EP_NAMES, "2 2 2 2 2 2")
        }
    }
--- request
GET /t
--- response_body
first: 0 0 2 2 2 2
second: 2 2 2 2 2 2
--- no_error_log
[error]



=== TEST 5: namespace_selector match with a list keeps only the namespaces listed
--- first_extra
namespace_selector = { match = { "ns-a", "ns-b" } }
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            a.say_counts("first", a.EP_NAMES, "2 2 2 2 0 0")
            a.say_counts("second", a.EP_NAMES, "2 2 2 2 2 2")
        }
    }
--- request
GET /t
--- response_body
first: 2 2 2 2 0 0
second: 2 2 2 2 2 2
--- no_error_log
[error]



=== TEST 6: namespace_selector match takes patterns, matched against the whole namespace name
--- first_extra
namespace_selector = { match = { "ns-[ab]" } }
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            a.say_counts("first", a.EP_NAMES, "2 2 2 2 0 0")
            a.say_counts("second", a.EP_NAMES, "2 2 2 2 2 2")
        }
    }
--- request
GET /t
--- response_body
first: 2 2 2 2 0 0
second: 2 2 2 2 2 2
--- no_error_log
[error]



=== TEST 7: namespace_selector not_match leaves out the namespaces that match
--- first_extra
namespace_selector = { not_match = { "ns-a" } }
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            a.say_counts("first", a.EP_NAMES, "0 0 2 2 2 2")
            a.say_counts("second", a.EP_NAMES, "2 2 2 2 2 2")
        }
    }
--- request
GET /t
--- response_body
first: 0 0 2 2 2 2
second: 2 2 2 2 2 2
--- no_error_log
[error]



=== TEST 8: namespace_selector not_match with a pattern leaves out every namespace it matches
--- first_extra
namespace_selector = { not_match = { "ns-[ab]" } }
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            a.say_counts("first", a.EP_NAMES, "0 0 0 0 2 2")
            a.say_counts("second", a.EP_NAMES, "2 2 2 2 2 2")
        }
    }
--- request
GET /t
--- response_body
first: 0 0 0 0 2 2
second: 2 2 2 2 2 2
--- no_error_log
[error]



=== TEST 9: single-cluster mode: names without a cluster id, and a selector
--- discovery_conf
{ service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" }, client = { token = "t" },
  shared_size = "1m", namespace_selector = { match = { "ns-[bc]" } } }
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            a.say_counts("", a.EP_NAMES, "0 0 2 2 2 2")
            ngx.say("with a cluster id: ", tostring(require("apisix.discovery.kubernetes").nodes("first/ns-b/ep:p1")))
            ngx.say("ns-b/ep:p2 = ", a.hosts("ns-b/ep:p2"))
        }
    }
--- request
GET /t
--- response_body
single: 0 0 2 2 2 2
with a cluster id: nil
ns-b/ep:p2 = 20.0.0.1:5002 20.0.0.2:5002
--- no_error_log
[error]



=== TEST 10: label_selector "first=1,second": only objects with first=1 and a "second" label, step by step
--- first_extra
label_selector = "first=1,second"
--- init
main::seed_endpoints();
# A service that always matches: changing it and waiting for the change proves every earlier change was seen.
my $st = fake_api('PUT', '/api/v1/namespaces/ns-s/endpoints/sentinel', {
    metadata => { name => 'sentinel', namespace => 'ns-s', labels => { first => '1', second => 'x' } },
    subsets => [{ addresses => [{ ip => '10.1.0.1' }], ports => [{ name => 'p', port => 1 }] }],
});
die "sentinel: $st" unless $st == 200 || $st == 201;
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            local t = require("k8s_test")
            local port = $TEST_NGINX_FAKE_API_PORT
            local names = { "ns-a/ep:p1", "ns-b/ep:p1", "ns-c/ep:5001" }
            local sentinel_size = 1

            local function sync()
                sentinel_size = sentinel_size + 1
                local ips = {}
                for i = 1, sentinel_size do ips[i] = "10.1.0." .. i end
                t.apply(port, t.endpoints("ns-s", "sentinel", ips, {{name = "p", port = 1}},
                                          {first = "1", second = "x"}))
                a.say_counts("first", {"ns-s/sentinel:p"}, tostring(sentinel_size))
            end

            local function label(ns, labels, expect)
                a.merge_patch(port, "/api/v1/namespaces/" .. ns .. "/endpoints/ep", {metadata = {labels = labels}})
                sync()
                a.say_counts("first", names, expect)
            end

            a.say_counts("first", names, "0 0 0")
            label("ns-a", {first = "1"}, "0 0 0")                  -- first=1 but no "second"
            label("ns-b", {first = "1", second = "x"}, "0 2 0")    -- both
            label("ns-a", {second = "1"}, "2 2 0")                 -- ns-a now has both
            label("ns-c", {second = "1"}, "2 2 0")                 -- "second" without first=1
            label("ns-c", {first = "1"}, "2 2 2")
            label("ns-b", {first = "2"}, "2 0 2")                  -- first=2 no longer matches
            label("ns-a", {second = require("cjson").null}, "0 0 2")  -- "second" removed
            a.say_counts("second", names, "2 2 2")
        }
    }
--- request
GET /t
--- response_body
first: 0 0 0
first: 2
first: 0 0 0
first: 3
first: 0 2 0
first: 4
first: 2 2 0
first: 5
first: 2 2 0
first: 6
first: 2 2 2
first: 7
first: 2 0 2
first: 8
first: 0 0 2
second: 2 2 2
--- timeout: 10
--- no_error_log
[error]



=== TEST 11: scaling: emptied subsets give 0; ns-c with one named port is addressed by name, no longer by number
--- init
main::seed_endpoints();
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            local t = require("k8s_test")
            local port = $TEST_NGINX_FAKE_API_PORT
            a.say_counts("first", a.EP_NAMES, "2 2 2 2 2 2")

            a.merge_patch(port, "/api/v1/namespaces/ns-a/endpoints/ep", '{"subsets": []}')
            a.say_counts("first", a.EP_NAMES, "0 0 2 2 2 2")
            a.say_counts("second", a.EP_NAMES, "0 0 2 2 2 2")

            t.apply(port, t.endpoints("ns-c", "ep", {"10.0.0.1"}, {{name = "p1", port = 5001}}))
            a.say_counts("first", {"ns-c/ep:5001", "ns-c/ep:5002", "ns-c/ep:p1"}, "0 0 1")
            ngx.say("first/ns-c/ep:5001 = ", a.hosts("first/ns-c/ep:5001"))
            ngx.say("first/ns-c/ep:p1 = ", a.hosts("first/ns-c/ep:p1"))
            a.say_counts("second", {"ns-c/ep:5001", "ns-c/ep:5002", "ns-c/ep:p1"}, "0 0 1")
        }
    }
--- request
GET /t
--- response_body
first: 2 2 2 2 2 2
first: 0 0 2 2 2 2
second: 0 0 2 2 2 2
first: 0 0 1
first/ns-c/ep:5001 = nil
first/ns-c/ep:p1 = 10.0.0.1:5001
second: 0 0 1
--- no_error_log
[error]
