# Client certificates (mTLS) against the fake API server requiring them: a certificate alone authenticates; a
# missing or wrong one is refused with a log line saying what to configure; certificates rotated on disk are used
# for the next connection without a gap in served nodes; no key material in the log or the dump.

use lib 't/lib';
use File::Path ();
BEGIN {
    $ENV{TEST_NGINX_TLS_DIR} = File::Spec->tmpdir . "/k8s-disc-t031-$$";
}
use K8sDiscTest fake_api => ['--tls', '--tls-dir', $ENV{TEST_NGINX_TLS_DIR}, '--require-client-cert'];

master_on();
workers(2);
repeat_each(1);
no_shuffle();
log_level('info');

my $dir = $ENV{TEST_NGINX_TLS_DIR};
my $pid = $$;
END { File::Path::remove_tree($dir) if $$ == $pid && $dir }

sub slurp {
    my $path = shift;
    open my $fh, '<', $path or die "$path: $!";
    local $/;
    return scalar <$fh>;
}

my $st = fake_api('POST', '/fake/apply', {
    kind => 'Endpoints', metadata => { namespace => 'ns', name => 'web' },
    subsets => [{ addresses => [{ ip => '10.0.0.1' }], ports => [{ name => 'http', port => 80 }] }],
});
die "seeding: $st" unless $st == 200;

# The certificate and key the rotation block starts with (copies, replaced during the test).
for my $f (['client.crt', 'live.crt'], ['client.key', 'live.key']) {
    open my $out, '>', "$dir/$f->[1]" or die "$f->[1]: $!";
    print $out slurp("$dir/$f->[0]");
    close $out;
}

# A line from the middle of each private key: none may show up in the error log or the dump.
our @KEY_LINES = map { (split /\n/, slurp("$dir/$_"))[1] } qw(client.key client2.key client.sec1.key);
$ENV{TEST_NGINX_KEY_LINE} = substr($KEY_LINES[0], 0, 40);

add_block_preprocessor(sub {
    my $block = shift;
    return if defined $block->http_config || !defined $block->config;
    my $client = $block->client_conf;
    $block->set_value('http_config', <<_EOC_);
    init_by_lua_block {
        require("resty.k8s_disc").init({
            service = { schema = "https", host = "127.0.0.1", port = "\$TEST_NGINX_FAKE_API_PORT" },
            client = $client,
            shared_size = "1m",
        })
    }
    init_worker_by_lua_block {
        require("resty.k8s_disc").init_worker()
    }
_EOC_
    my $own = $block->no_error_log;
    my @own = !defined $own ? () : ref $own ? @$own : grep { length } split /\n/, $own;
    $block->set_value('no_error_log', [@KEY_LINES, @own]);
});

plan tests => 26;

run_tests();

__DATA__

=== TEST 1: a client certificate alone (SEC1 EC key) authenticates; no key material in the dump
--- client_conf
{ ca_file = "$TEST_NGINX_TLS_DIR/ca.crt", cert_file = "$TEST_NGINX_TLS_DIR/client.crt",
  key_file = "$TEST_NGINX_TLS_DIR/client.sec1.key" }
--- config
    location = /t {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local fake = require("fake_api")
            ngx.say("ready: ", require("k8s_test").wait_ready(10) == true)
            local n = k8s_disc.nodes("ns/web:http")
            ngx.say("nodes: ", n and n[1].host)
            local users = fake.stats($TEST_NGINX_FAKE_API_PORT).requests_by_user
            ngx.say("authenticated as: ", users["k8s-disc-client"] and "k8s-disc-client")
            local dump = require("cjson").encode(k8s_disc.dump())
            ngx.say("key in dump: ", dump:find("$TEST_NGINX_KEY_LINE", 1, true) ~= nil)
            ngx.say("key path in dump: ", dump:find("client.sec1.key", 1, true) ~= nil)
        }
    }
--- request
GET /t
--- response_body
ready: true
nodes: 10.0.0.1
authenticated as: k8s-disc-client
key in dump: false
key path in dump: true
--- no_error_log
[error]



=== TEST 2: without a client certificate the server refuses, and the log says what to set
--- client_conf
{ ca_file = "$TEST_NGINX_TLS_DIR/ca.crt", token = "some-token" }
--- config
    location = /t {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local t = require("k8s_test")
            ngx.say("explained: ", t.wait_until(function()
                local e = k8s_disc.dump().status[1].last_error or ""
                return e:find("requires a client certificate", 1, true)
            end, 10) ~= nil)
            ngx.say("ready: ", k8s_disc.ready())
        }
    }
--- request
GET /t
--- response_body
explained: true
ready: false
--- error_log
the API server requires a client certificate: set client.cert_file and client.key_file
--- no_error_log
some-token



=== TEST 3: a client certificate from a CA the server does not trust is refused with a clear log line
--- client_conf
{ ca_file = "$TEST_NGINX_TLS_DIR/ca.crt", cert_file = "$TEST_NGINX_TLS_DIR/wrong-client.crt",
  key_file = "$TEST_NGINX_TLS_DIR/wrong-client.key" }
--- config
    location = /t {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local t = require("k8s_test")
            ngx.say("explained: ", t.wait_until(function()
                local e = k8s_disc.dump().status[1].last_error or ""
                return e:find("refused our client certificate", 1, true)
            end, 10) ~= nil)
            ngx.say("ready: ", k8s_disc.ready())
        }
    }
--- request
GET /t
--- response_body
explained: true
ready: false
--- error_log eval
qr{the API server refused our client certificate \([a-z][a-zA-Z ]+ alert\): client.cert_file must be signed by a CA the API server accepts client certificates from}



=== TEST 4: certificates rotated on disk are used for the next connection, with no gap in served nodes
--- client_conf
{ ca_file = "$TEST_NGINX_TLS_DIR/ca.crt", cert_file = "$TEST_NGINX_TLS_DIR/live.crt",
  key_file = "$TEST_NGINX_TLS_DIR/live.key" }
--- config
    location = /t {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local t = require("k8s_test")
            local fake = require("fake_api")
            local port = $TEST_NGINX_FAKE_API_PORT
            assert(t.wait_ready(10))
            assert(t.wait_until(function() return fake.stats(port).active_watches == 1 end, 5))
            local done, gaps = false, 0
            local poller = ngx.thread.spawn(function()
                while not done do
                    local n = k8s_disc.nodes("ns/web:http")
                    if not n or #n == 0 then gaps = gaps + 1 end
                    ngx.sleep(0.002)
                end
            end)
            -- Replace certificate and key the way a secret volume does: write aside, rename over.
            local dir = "$TEST_NGINX_TLS_DIR"
            for _, pair in ipairs({ { "client2.crt", "live.crt" }, { "client2.key", "live.key" } }) do
                local src = assert(io.open(dir .. "/" .. pair[1]))
                local data = src:read("*a")
                src:close()
                local dst = assert(io.open(dir .. "/" .. pair[2] .. ".new", "w"))
                dst:write(data)
                dst:close()
                assert(os.rename(dir .. "/" .. pair[2] .. ".new", dir .. "/" .. pair[2]))
            end
            ngx.sleep(0.1)
            assert(fake.request(port, "POST", "/fake/close-watches") == 200)
            ngx.say("new certificate used: ", t.wait_until(function()
                local s = fake.stats(port)
                return s.requests_by_user["k8s-disc-client-2"] ~= nil and s.active_watches == 1
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
        }
    }
--- timeout: 30
--- request
GET /t
--- response_body
new certificate used: true
changes arrive: true
gaps: 0
--- error_log
TLS certificates changed on disk; new connections use them
--- no_error_log
[error]
