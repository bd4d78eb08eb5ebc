# Verified TLS against the fake API server in TLS mode (its CA and certificates are generated at start into
# $TEST_NGINX_TLS_DIR): a CA file, https://[::1], a kubeconfig, ssl_verify false and its warning, a wrong CA
# explained and fixed by a reload, 401/403 with their messages and back-off, a token file rotated mid-watch, and
# no token in the log or the dump.

use lib 't/lib';
use File::Path ();
BEGIN {
    $ENV{TEST_NGINX_TLS_DIR} = File::Spec->tmpdir . "/k8s-disc-t030-$$";
    $ENV{TEST_NGINX_TOKEN} = 'tls-test-token-1';
}
use K8sDiscTest fake_api => ['--tls', '--tls-dir', $ENV{TEST_NGINX_TLS_DIR}, '--ipv6-loopback',
                             '--token', $ENV{TEST_NGINX_TOKEN}];

master_on();
workers(2);
repeat_each(1);
no_shuffle();
log_level('info');

my $dir = $ENV{TEST_NGINX_TLS_DIR};
my $pid = $$;
END { File::Path::remove_tree($dir) if $$ == $pid && $dir }

sub write_file {
    my ($path, $text) = @_;
    open my $fh, '>', $path or die "$path: $!";
    print $fh $text;
    close $fh;
}

my $st = fake_api('POST', '/fake/apply', {
    kind => 'Endpoints', metadata => { namespace => 'ns', name => 'web' },
    subsets => [{ addresses => [{ ip => '10.0.0.1' }], ports => [{ name => 'http', port => 80 }] }],
});
die "seeding: $st" unless $st == 200;

# A kubeconfig with the CA as a path relative to the file and the token inline.
my $port = fake_api_port();
write_file("$dir/kubeconfig", <<"_EOK_");
apiVersion: v1
kind: Config
current-context: fake
clusters:
- name: fake
  cluster:
    server: https://localhost:$port
    certificate-authority: ca.crt
contexts:
- name: fake
  context: {cluster: fake, user: reader}
users:
- name: reader
  user:
    token: $ENV{TEST_NGINX_TOKEN}
_EOK_

# The CA the "wrong CA, then reload" block starts with, and the token files of the 401 and rotation blocks.
write_file("$dir/which-ca", "$dir/other-ca.crt");
write_file("$dir/token-401", "not-the-token\n");
write_file("$dir/token-rotate", "$ENV{TEST_NGINX_TOKEN}\n");

# `--- discovery_conf` is the Lua table given to init (the default: https to 127.0.0.1 with the fake's CA).
add_block_preprocessor(sub {
    my $block = shift;
    return if defined $block->http_config || !defined $block->config;
    my $conf = $block->discovery_conf
        // '{ service = { schema = "https", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" },'
         . ' client = { token = "$TEST_NGINX_TOKEN", ca_file = "$TEST_NGINX_TLS_DIR/ca.crt" },'
         . ' shared_size = "1m" }';
    $block->set_value('http_config', <<_EOC_);
    init_by_lua_block {
        require("resty.k8s_disc").init($conf)
    }
    init_worker_by_lua_block {
        require("resty.k8s_disc").init_worker()
    }
_EOC_
});

plan tests => 36;

run_tests();

__DATA__

=== TEST 1: verified https with client.ca_file; the token is in neither the log nor the dump
--- config
    location = /t {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local t = require("k8s_test")
            ngx.say("ready: ", t.wait_ready(10) == true)
            local n = k8s_disc.nodes("ns/web:http")
            ngx.say("nodes: ", n and n[1].host)
            local dump = require("cjson").encode(k8s_disc.dump())
            ngx.say("token in dump: ", dump:find("tls-test-token-1", 1, true) ~= nil)
            ngx.say("ca_file in dump: ", dump:find("ca.crt", 1, true) ~= nil)
        }
    }
--- request
GET /t
--- response_body
ready: true
nodes: 10.0.0.1
token in dump: false
ca_file in dump: true
--- no_error_log
[error]
tls-test-token-1
[warn]



=== TEST 2: https://[::1] verifies against the certificate's IPv6 SAN
--- discovery_conf
{ service = { schema = "https", host = "[::1]", port = "$TEST_NGINX_FAKE_API_PORT" },
  client = { token = "$TEST_NGINX_TOKEN", ca_file = "$TEST_NGINX_TLS_DIR/ca.crt" }, shared_size = "1m" }
--- config
    location = /t {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            ngx.say("ready: ", require("k8s_test").wait_ready(10) == true)
            local n = k8s_disc.nodes("ns/web:http")
            ngx.say("nodes: ", n and n[1].host)
        }
    }
--- request
GET /t
--- response_body
ready: true
nodes: 10.0.0.1
--- error_log
[::1]:
--- no_error_log
[error]
tls-test-token-1



=== TEST 3: a kubeconfig supplies the server, the CA (a relative path) and the token
--- discovery_conf
{ kubeconfig = "$TEST_NGINX_TLS_DIR/kubeconfig", shared_size = "1m" }
--- config
    location = /t {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            ngx.say("ready: ", require("k8s_test").wait_ready(10) == true)
            local n = k8s_disc.nodes("ns/web:http")
            ngx.say("nodes: ", n and n[1].host)
            local dump = require("cjson").encode(k8s_disc.dump())
            ngx.say("token in dump: ", dump:find("tls-test-token-1", 1, true) ~= nil)
        }
    }
--- request
GET /t
--- response_body
ready: true
nodes: 10.0.0.1
token in dump: false
--- no_error_log
[error]
tls-test-token-1



=== TEST 4: ssl_verify false connects without a CA and warns once at start
--- discovery_conf
{ service = { schema = "https", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT", ssl_verify = false },
  client = { token = "$TEST_NGINX_TOKEN" }, shared_size = "1m" }
--- config
    location = /t {
        content_by_lua_block {
            ngx.say("ready: ", require("k8s_test").wait_ready(10) == true)
        }
    }
--- request
GET /t
--- response_body
ready: true
--- error_log
service.ssl_verify: false: the API server's certificate is not verified, so anyone on the network path can impersonate it and receive the token
--- no_error_log
[error]
tls-test-token-1



=== TEST 5: a wrong CA fails with the reason and the fix, and works after a reload with the right one
--- http_config
    init_by_lua_block {
        local dir = "$TEST_NGINX_TLS_DIR"
        local f = assert(io.open(dir .. "/which-ca"))
        local ca = f:read("*l")
        f:close()
        require("resty.k8s_disc").init({
            service = { schema = "https", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" },
            client = { token = "$TEST_NGINX_TOKEN", ca_file = ca }, shared_size = "1m",
        })
    }
    init_worker_by_lua_block {
        require("resty.k8s_disc").init_worker()
    }
--- config
    location = /t {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local t = require("k8s_test")
            local err = t.wait_until(function()
                local s = k8s_disc.dump().status[1]
                return s.last_error and s.last_error:find("unknown issuer", 1, true) and s.last_error
            end, 10)
            ngx.say("ready: ", k8s_disc.ready())
            ngx.say("explained: ", err ~= nil)
            -- Fix the configuration and reload nginx.
            local f = assert(io.open("$TEST_NGINX_TLS_DIR/which-ca", "w"))
            f:write("$TEST_NGINX_TLS_DIR/ca.crt\n")
            f:close()
            local ffi = require("ffi")
            ffi.cdef("int kill(int pid, int sig);")
            local pf = assert(io.open(ngx.config.prefix() .. "logs/nginx.pid"))
            local pid = tonumber(pf:read("*l"))
            pf:close()
            ngx.say("reload signalled: ", ffi.C.kill(pid, 1) == 0)
            -- This worker finishes the request after the reload; the region it reads is the one the new
            -- configuration's watcher fills.
            ngx.say("ready after reload: ", require("k8s_test").wait_ready(10) == true)
            local n = k8s_disc.nodes("ns/web:http")
            ngx.say("nodes: ", n and n[1].host)
        }
    }
--- timeout: 20
--- request
GET /t
--- response_body
ready: false
explained: true
reload signalled: true
ready after reload: true
nodes: 10.0.0.1
--- error_log eval
[qr{TLS verification failed: the API server's certificate is signed by an unknown issuer \(trusting only the CA in client.ca_file \S+/other-ca.crt\); set client.ca_file to the CA that signed it}, qr{listed 1 service}]
--- no_error_log
tls-test-token-1



=== TEST 6: 401 and 403 are logged with their messages and retried with back-off, keeping the data
--- discovery_conf
{ service = { schema = "https", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" },
  client = { token_file = "$TEST_NGINX_TLS_DIR/token-401", ca_file = "$TEST_NGINX_TLS_DIR/ca.crt" },
  shared_size = "1m" }
--- config
    location = /t {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local t = require("k8s_test")
            local fake = require("fake_api")
            local port = $TEST_NGINX_FAKE_API_PORT
            local function last_error()
                return k8s_disc.dump().status[1].last_error or ""
            end
            ngx.say("401 seen: ", t.wait_until(function()
                return last_error():find("HTTP 401 Unauthorized: Unauthorized", 1, true)
            end, 10) ~= nil)
            local before = fake.stats(port).unauthorized
            ngx.sleep(3)
            local tries = fake.stats(port).unauthorized - before
            -- 0.8 s doubling (with jitter): at most 3 more attempts in 3 s, and at least 1.
            ngx.say("backed off: ", tries >= 1 and tries <= 3 or tries)
            -- The fixed token file is read again after the 401.
            local f = assert(io.open("$TEST_NGINX_TLS_DIR/token-401.new", "w"))
            f:write("tls-test-token-1\n")
            f:close()
            assert(os.rename("$TEST_NGINX_TLS_DIR/token-401.new", "$TEST_NGINX_TLS_DIR/token-401"))
            ngx.say("ready with the fixed token: ", t.wait_ready(15) == true)
            -- A change delivered by the watch proves it healthy, which resets the back-off grown by the 401s.
            assert(fake.request(port, "POST", "/fake/apply", require("cjson").encode(
                t.endpoints("ns", "probe", {"10.0.0.5"}, {{name = "http", port = 80}}))) == 200)
            assert(t.wait_until(function() return k8s_disc.nodes("ns/probe:http") end, 10))

            assert(fake.request(port, "PUT", "/fake/rbac", '{"deny":["list","watch"]}') == 200)
            assert(fake.request(port, "POST", "/fake/close-watches") == 200)
            ngx.say("403 seen: ", t.wait_until(function()
                return last_error():find('HTTP 403 Forbidden: endpoints is forbidden: User "system:serviceaccount:default:k8s-disc" cannot watch resource "endpoints" in API group "" at the cluster scope', 1, true)
            end, 10) ~= nil)
            local n = k8s_disc.nodes("ns/web:http")
            ngx.say("still served: ", n and n[1].host)
            assert(fake.request(port, "DELETE", "/fake/rbac") == 200)
            -- The back-off has grown through the 401s and 403s (it resets only after a healthy watch): the
            -- next attempt may be up to 25.6 s away.
            ngx.say("watching again: ", t.wait_until(function()
                return k8s_disc.dump().status[1].state == "watching" and fake.stats(port).active_watches > 0
            end, 35) ~= nil)
        }
    }
--- timeout: 80
--- request
GET /t
--- response_body
401 seen: true
backed off: true
ready with the fixed token: true
403 seen: true
still served: 10.0.0.1
watching again: true
--- error_log
list Endpoints failed: HTTP 401 Unauthorized: Unauthorized
watch Endpoints failed: HTTP 403 Forbidden: endpoints is forbidden: User "system:serviceaccount:default:k8s-disc" cannot watch resource "endpoints" in API group "" at the cluster scope
--- no_error_log
tls-test-token-1
not-the-token



=== TEST 7: a token file rotated mid-watch (the old token then refused) keeps discovery running without a gap
--- discovery_conf
{ service = { schema = "https", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" },
  client = { token_file = "$TEST_NGINX_TLS_DIR/token-rotate", ca_file = "$TEST_NGINX_TLS_DIR/ca.crt" },
  shared_size = "1m" }
--- config
    location = /t {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local t = require("k8s_test")
            local fake = require("fake_api")
            local port = $TEST_NGINX_FAKE_API_PORT
            assert(t.wait_ready(10))
            assert(t.wait_until(function() return fake.stats(port).active_watches == 1 end, 5))
            local started = fake.stats(port).watches_started
            local unauthorized = fake.stats(port).unauthorized

            local done, gaps = false, 0
            local poller = ngx.thread.spawn(function()
                while not done do
                    local n = k8s_disc.nodes("ns/web:http")
                    if not n or #n == 0 then gaps = gaps + 1 end
                    ngx.sleep(0.002)
                end
            end)

            local f = assert(io.open("$TEST_NGINX_TLS_DIR/token-rotate.new", "w"))
            f:write("tls-test-token-2\n")
            f:close()
            assert(os.rename("$TEST_NGINX_TLS_DIR/token-rotate.new", "$TEST_NGINX_TLS_DIR/token-rotate"))
            assert(fake.request(port, "PUT", "/fake/token", "tls-test-token-2") == 200)
            ngx.sleep(0.1)
            assert(fake.request(port, "POST", "/fake/close-watches") == 200)
            ngx.say("re-watched: ", t.wait_until(function()
                local s = fake.stats(port)
                return s.watches_started > started and s.active_watches == 1
            end, 10) ~= nil)
            assert(fake.request(port, "POST", "/fake/apply", require("cjson").encode(
                t.endpoints("ns", "web", {"10.0.0.2"}, {{name = "http", port = 80}}))) == 200)
            ngx.say("changes arrive: ", t.wait_until(function()
                local n = k8s_disc.nodes("ns/web:http")
                return n and n[1].host == "10.0.0.2"
            end, 10) ~= nil)
            done = true
            ngx.thread.wait(poller)
            ngx.say("gaps: ", gaps)
            ngx.say("401s: ", fake.stats(port).unauthorized - unauthorized)
        }
    }
--- timeout: 30
--- request
GET /t
--- response_body
re-watched: true
changes arrive: true
gaps: 0
401s: 0
--- error_log
changed; using the new token
--- no_error_log
[error]
tls-test-token-1
tls-test-token-2
