# APISIX's own config tests (t/kubernetes/discovery/kubernetes.t and t/discovery/kubernetes_schema.t), run
# against this project's drop-in adapter: the defaults the dump reports, the multi-cluster id rule, ${VAR}
# expansion, and token_file rotation. The fake API server of this file requires a bearer token.

use lib 't/lib';
use K8sDiscTest fake_api => ['--token', 't1'];
use File::Temp ();

master_on();
workers(2);
repeat_each(1);
no_shuffle();
log_level('info');

my $auth = { Authorization => 'Bearer t1' };

# The variables APISIX's CI exports; the library expands them in the master at init.
my $token_dir = File::Temp::tempdir(CLEANUP => 1);
$ENV{KUBERNETES_SERVICE_HOST}       = '127.0.0.1';
$ENV{KUBERNETES_SERVICE_PORT}       = fake_api_port();
$ENV{KUBERNETES_CLIENT_TOKEN}       = 't1';
$ENV{KUBERNETES_CLIENT_TOKEN_FILE}  = "$token_dir/token";
$ENV{MyPort}                        = fake_api_port();
$ENV{TEST_NGINX_TOKEN_FILE}         = $ENV{KUBERNETES_CLIENT_TOKEN_FILE};    # for config sections
$ENV{TEST_NGINX_LATE_TOKEN_FILE}    = "$token_dir/late-token";

sub write_token {
    open my $fh, '>', $ENV{KUBERNETES_CLIENT_TOKEN_FILE} or die "token file: $!";
    print $fh "$_[0]\n";
    close $fh;
}
write_token('t1');

my ($st, $body) = fake_api('POST', '/api/v1/namespaces/ns-a/endpoints', {
    metadata => { name => 'ep' },
    subsets  => [{ addresses => [{ ip => '10.0.0.1' }, { ip => '10.0.0.2' }],
                   ports => [{ name => 'p1', port => 5001 }] }],
}, $auth);
die "seeding: $st $body" unless $st == 201;

# `--- discovery_conf` (a Lua table literal) becomes APISIX's discovery.kubernetes, loaded the way APISIX loads
# discovery modules: required in init_by_lua (the master), init_worker() in every process.
# `--- expected_config` (JSON) adds a location /t comparing it with dump_data().config.
add_block_preprocessor(sub {
    my $block = shift;
    my $conf = $block->discovery_conf;
    if (defined $conf && !defined $block->http_config) {
        $block->set_value('http_config', apisix_http_config($conf));
    }
    my $expected = $block->expected_config;
    if (defined $expected && !defined $block->config) {
        $block->set_value('config', <<_EOC_);
    location = /t {
        content_by_lua_block {
            local cjson = require("cjson.safe")
            local expected = assert(cjson.decode([==[$expected]==]))
            local got = require("apisix.discovery.kubernetes").dump_data().config
            local ok, where = require("k8s_test").same(got, expected)
            ngx.say(ok and "same" or ("differs at " .. where .. "; got " .. cjson.encode(got)))
        }
    }
_EOC_
        $block->set_value('request', "GET /t\n") unless defined $block->request;
        $block->set_value('response_body', "same\n") unless defined $block->response_body;
    }
});

plan tests => 39;

run_tests();

__DATA__

=== TEST 1: minimal config (client.token only): APISIX's defaults, token masked, ssl_verify shown as true
--- discovery_conf
{ client = { token = "${KUBERNETES_CLIENT_TOKEN}" } }
--- expected_config
{"service":{"schema":"https","host":"${KUBERNETES_SERVICE_HOST}","port":"${KUBERNETES_SERVICE_PORT}","ssl_verify":true},
 "client":{"token":"******"},"watch_endpoint_slices":false,"shared_size":"64m","default_weight":50}



=== TEST 2: an empty service object gets the same defaults
--- discovery_conf
{ service = {}, client = { token = "${KUBERNETES_CLIENT_TOKEN}" } }
--- expected_config
{"service":{"schema":"https","host":"${KUBERNETES_SERVICE_HOST}","port":"${KUBERNETES_SERVICE_PORT}","ssl_verify":true},
 "client":{"token":"******"},"watch_endpoint_slices":false,"shared_size":"64m","default_weight":50}



=== TEST 3: no client at all: token_file defaults to the in-pod service-account path (nothing masked)
--- discovery_conf
{ service = { schema = "http", host = "127.0.0.1", port = "1" } }
--- expected_config
{"service":{"schema":"http","host":"127.0.0.1","port":"1","ssl_verify":true},
 "client":{"token_file":"/var/run/secrets/kubernetes.io/serviceaccount/token"},
 "watch_endpoint_slices":false,"shared_size":"64m","default_weight":50}



=== TEST 4: custom host and shared_size 2m are kept as given
--- discovery_conf
{ service = { host = "sample.com" }, client = { token = "${KUBERNETES_CLIENT_TOKEN}" }, shared_size = "2m" }
--- expected_config
{"service":{"schema":"https","host":"sample.com","port":"${KUBERNETES_SERVICE_PORT}","ssl_verify":true},
 "client":{"token":"******"},"watch_endpoint_slices":false,"shared_size":"2m","default_weight":50}



=== TEST 5: default_weight 33 is kept, and every node carries it
--- discovery_conf
{ service = { schema = "http" }, client = { token = "${KUBERNETES_CLIENT_TOKEN}" }, default_weight = 33 }
--- config
    location = /t {
        content_by_lua_block {
            local k8s = require("apisix.discovery.kubernetes")
            local t = require("k8s_test")
            local conf = k8s.dump_data().config
            ngx.say("default_weight: ", conf.default_weight)
            local nodes = t.wait_until(function() return k8s.nodes("ns-a/ep:p1") end, 5)
            for _, n in ipairs(nodes or {}) do
                ngx.say(n.host, ":", n.port, " weight ", n.weight)
            end
        }
    }
--- request
GET /t
--- response_body
default_weight: 33
10.0.0.1:5001 weight 33
10.0.0.2:5001 weight 33
--- no_error_log
[error]



=== TEST 6: multi-cluster (ids debug, release): per-item defaults, no host/port defaults, ${MyPort} kept verbatim
--- discovery_conf
{
    { id = "debug", service = { host = "1.cluster.com", port = "${MyPort}" },
      client = { token = "${KUBERNETES_CLIENT_TOKEN}" } },
    { id = "release", service = { schema = "http", host = "2.cluster.com", port = "${MyPort}" },
      client = { token_file = "/var/token" } },
}
--- expected_config
[{"id":"debug","service":{"schema":"https","host":"1.cluster.com","port":"${MyPort}","ssl_verify":true},
  "client":{"token":"******"},"watch_endpoint_slices":false,"shared_size":"64m","default_weight":50},
 {"id":"release","service":{"schema":"http","host":"2.cluster.com","port":"${MyPort}","ssl_verify":true},
  "client":{"token_file":"/var/token"},"watch_endpoint_slices":false,"shared_size":"64m","default_weight":50}]



=== TEST 7: watch_endpoint_slices true is kept
--- discovery_conf
{ client = { token = "${KUBERNETES_CLIENT_TOKEN}" }, watch_endpoint_slices = true }
--- expected_config
{"service":{"schema":"https","host":"${KUBERNETES_SERVICE_HOST}","port":"${KUBERNETES_SERVICE_PORT}","ssl_verify":true},
 "client":{"token":"******"},"watch_endpoint_slices":true,"shared_size":"64m","default_weight":50}



=== TEST 8: shared_size 1000m is accepted
--- discovery_conf
{ client = { token = "${KUBERNETES_CLIENT_TOKEN}" }, shared_size = "1000m" }
--- expected_config
{"service":{"schema":"https","host":"${KUBERNETES_SERVICE_HOST}","port":"${KUBERNETES_SERVICE_PORT}","ssl_verify":true},
 "client":{"token":"******"},"watch_endpoint_slices":false,"shared_size":"1000m","default_weight":50}



=== TEST 9: an explicit ssl_verify false is kept (APISIX's old default, now opt-in)
--- discovery_conf
{ service = { ssl_verify = false }, client = { token = "${KUBERNETES_CLIENT_TOKEN}" } }
--- expected_config
{"service":{"schema":"https","host":"${KUBERNETES_SERVICE_HOST}","port":"${KUBERNETES_SERVICE_PORT}","ssl_verify":false},
 "client":{"token":"******"},"watch_endpoint_slices":false,"shared_size":"64m","default_weight":50}



=== TEST 10: host, port and token from the environment reach a server that checks the token
--- discovery_conf
{ service = { schema = "http", host = "${KUBERNETES_SERVICE_HOST}", port = "${KUBERNETES_SERVICE_PORT}" },
  client = { token = "${KUBERNETES_CLIENT_TOKEN}" } }
--- config
    location = /t {
        content_by_lua_block {
            local k8s = require("apisix.discovery.kubernetes")
            local t = require("k8s_test")
            ngx.say("ready: ", t.wait_until(function() return k8s.check_discovery_ready() end, 5) == true)
            ngx.say("ns-a/ep:p1 ", t.counts({"ns-a/ep:p1"}, "2", 5, k8s.nodes))
        }
    }
--- request
GET /t
--- response_body
ready: true
ns-a/ep:p1 2
--- no_error_log
[error]



=== TEST 11: multi-cluster ids "cluster1" and 64 x "a" are valid and both serve
--- discovery_conf
{
    { id = "cluster1", service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" },
      client = { token = "t1" }, shared_size = "1m" },
    { id = string.rep("a", 64), service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" },
      client = { token = "t1" }, shared_size = "1m" },
}
--- config
    location = /t {
        content_by_lua_block {
            local k8s = require("apisix.discovery.kubernetes")
            local t = require("k8s_test")
            local long = string.rep("a", 64)
            ngx.say(t.counts({"cluster1/ns-a/ep:p1", long .. "/ns-a/ep:p1", "cluster2/ns-a/ep:p1"}, "2 2 0", 5, k8s.nodes))
            ngx.say("unknown id: ", tostring(k8s.nodes("cluster2/ns-a/ep:p1")))
        }
    }
--- request
GET /t
--- response_body
2 2 0
unknown id: nil
--- no_error_log
[error]



=== TEST 12: id "CLUSTER1" (uppercase) is rejected: nginx does not start, the message names the field
--- discovery_conf
{ { id = "CLUSTER1", service = { schema = "http", host = "127.0.0.1", port = "6443" }, client = { token = "t1" } } }
--- config
    location = /t { return 200; }
--- must_die
--- error_log eval
qr/invalid discovery config: \[0\]\.id = "CLUSTER1"/



=== TEST 13: id "cluster-1" (dash) is rejected
--- discovery_conf
{ { id = "cluster-1", service = { schema = "http", host = "127.0.0.1", port = "6443" }, client = { token = "t1" } } }
--- config
    location = /t { return 200; }
--- must_die
--- error_log eval
qr/invalid discovery config: \[0\]\.id = "cluster-1"/



=== TEST 14: an id of 65 characters is rejected (the second item: the index says which)
--- discovery_conf
{
    { id = "ok", service = { schema = "http", host = "127.0.0.1", port = "6443" }, client = { token = "t1" } },
    { id = string.rep("a", 65), service = { schema = "http", host = "127.0.0.1", port = "6443" },
      client = { token = "t1" } },
}
--- config
    location = /t { return 200; }
--- must_die
--- error_log eval
qr/invalid discovery config: \[1\]\.id = "a{65}"/



=== TEST 15: duplicate ids are rejected at start (APISIX only fails later, in init_worker)
--- discovery_conf
{
    { id = "dup", service = { schema = "http", host = "127.0.0.1", port = "6443" }, client = { token = "t1" } },
    { id = "dup", service = { schema = "http", host = "127.0.0.1", port = "6443" }, client = { token = "t1" } },
}
--- config
    location = /t { return 200; }
--- must_die
--- error_log eval
qr/invalid discovery config: \[1\]\.id = "dup"/



=== TEST 16: token_file rotation: the server switches to a new token, the file is rewritten, discovery keeps working
--- init
main::write_token('t1');
my $st = fake_api('PUT', '/fake/token', 't1');
die "PUT /fake/token: $st" unless $st == 200;
--- discovery_conf
{ service = { schema = "http", host = "${KUBERNETES_SERVICE_HOST}", port = "${KUBERNETES_SERVICE_PORT}" },
  client = { token_file = "${KUBERNETES_CLIENT_TOKEN_FILE}" } }
--- config
    location = /t {
        content_by_lua_block {
            local k8s = require("apisix.discovery.kubernetes")
            local t = require("k8s_test")
            local fake = require("fake_api")
            local port = $TEST_NGINX_FAKE_API_PORT
            ngx.say("before: ", t.counts({"ns-a/ep:p1"}, "2", 5, k8s.nodes))

            -- Rotate: new token in the file, the server accepts only the new one, and the watch must reconnect.
            -- The changed file is noticed before the next request, so the new watch carries the new token.
            local f = assert(io.open("$TEST_NGINX_TOKEN_FILE", "w"))
            f:write("t2\n")
            f:close()
            ngx.say("token switched: ", (fake.request(port, "PUT", "/fake/token", "t2")))
            ngx.say("watches closed: ", (fake.request(port, "POST", "/fake/close-watches")))

            -- A change made after the rotation arrives (written through the admin API, which needs no token).
            local ep = t.endpoints("ns-a", "ep", {"10.0.0.1", "10.0.0.2", "10.0.0.3"}, {{name = "p1", port = 5001}})
            ngx.say("applied: ", (fake.request(port, "POST", "/fake/apply", ep)))
            ngx.say("after: ", t.counts({"ns-a/ep:p1"}, "3", 10, k8s.nodes))

            -- And the old token is really refused now, so the watcher must have picked up the new one.
            local st = fake.request(port, "GET", "/api/v1/endpoints", nil, {Authorization = "Bearer t1"})
            ngx.say("old token: ", st)
        }
    }
--- request
GET /t
--- response_body
before: 2
token switched: 200
watches closed: 200
applied: 200
after: 3
old token: 401
--- timeout: 15
--- error_log
changed; using the new token



=== TEST 17: a token file missing at start is retried until it appears (APISIX gives up for the process lifetime)
--- init
unlink $ENV{TEST_NGINX_LATE_TOKEN_FILE};
my $st = fake_api('PUT', '/fake/token', 't1');
die "PUT /fake/token: $st" unless $st == 200;
$st = fake_api('POST', '/fake/apply', {
    kind => 'Endpoints', apiVersion => 'v1', metadata => { name => 'ep', namespace => 'ns-a' },
    subsets => [{ addresses => [{ ip => '10.0.0.1' }, { ip => '10.0.0.2' }, { ip => '10.0.0.4' }],
                  ports => [{ name => 'p1', port => 5001 }] }],
});
die "apply: $st" unless $st == 200;
--- discovery_conf
{ service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" },
  client = { token_file = "$TEST_NGINX_LATE_TOKEN_FILE" }, shared_size = "1m" }
--- config
    location = /t {
        content_by_lua_block {
            local k8s = require("apisix.discovery.kubernetes")
            local t = require("k8s_test")
            ngx.sleep(0.5)
            ngx.say("ready without the file: ", (k8s.check_discovery_ready()))
            local f = assert(io.open("$TEST_NGINX_LATE_TOKEN_FILE", "w"))
            f:write("t1\n")
            f:close()
            ngx.say("ready once it exists: ", t.wait_until(function() return k8s.check_discovery_ready() end, 8) == true)
            ngx.say("ns-a/ep:p1 ", t.counts({"ns-a/ep:p1"}, "3", 2, k8s.nodes))
        }
    }
--- request
GET /t
--- response_body
ready without the file: false
ready once it exists: true
ns-a/ep:p1 3
--- timeout: 12
--- error_log
cannot read token file
