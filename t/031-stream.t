# Discovery in both subsystems, as OpenResty and APISIX run it: http and stream each initialise it in their own
# Lua VM. The same config shares one watcher and one region; different configs get a region each. Needs an nginx
# with the privileged agent and the stream Lua module; skipped, saying why, elsewhere.
#
# Each block's stream block (in main_config) has three servers:
#   $TEST_NGINX_RAND_PORT_1  answers one line per request line: "nodes NAME" (host:port:weight ...), "ready",
#                            "writer" (the dump's writer pid), through the block's lookup module
#   $TEST_NGINX_RAND_PORT_2  a backend that answers "backend PORT"
#   $TEST_NGINX_RAND_PORT_3  proxies to the first node of ns-s/backend:tcp, picked in balancer_by_lua

use lib 't/lib';
use K8sDiscTest;

skip_unless('privileged_agent', 'stream_lua');

master_on();
workers(2);
repeat_each(1);
no_shuffle();
log_level('info');

for my $ns ('ns-a', 'ns-b') {
    fake_api('POST', "/api/v1/namespaces/$ns/endpoints", {
        metadata => { name => 'web' },
        subsets  => [{
            addresses => [{ ip => '10.0.0.1' }, { ip => '10.0.0.2' }, ($ns eq 'ns-b' ? { ip => '10.0.0.3' } : ())],
            ports     => [{ name => 'http', port => 8080 }],
        }],
    });
}

# A discovery config as a Lua table literal; extra fields (Lua source) are added inside the table.
sub main::disc_conf {
    my ($extra) = @_;
    $extra //= '';
    return qq[{ service = { schema = "http", host = "127.0.0.1", port = "\$TEST_NGINX_FAKE_API_PORT" },
                client = { token = "t" }, shared_size = "3m", $extra }];
}

# http_config initialising the plain OpenResty module.
sub main::plain_http {
    my ($conf, $opts) = @_;
    $opts //= '{}';
    return <<"_EOC_";
    init_by_lua_block {
        require("resty.k8s_disc").init($conf, $opts)
    }
    init_worker_by_lua_block {
        require("resty.k8s_disc").init_worker()
    }
_EOC_
}

# The stream block: init and init_worker Lua code, and the module that answers lookups (its nodes, dump and
# ready functions named by the last three arguments).
sub main::stream_block {
    my ($init, $init_worker, $module, $dump_fn, $ready_fn) = @_;
    return <<"_EOC_";
stream {
    lua_package_path "\$TEST_NGINX_K8S_DISC_ROOT/lua/?.lua;\$TEST_NGINX_K8S_DISC_ROOT/lua/?/init.lua;\$TEST_NGINX_K8S_DISC_ROOT/t/lua/?.lua;;";
    lua_package_cpath "\$TEST_NGINX_K8S_DISC_LIB_DIR/?.so;;";
    init_by_lua_block {
        $init
    }
    init_worker_by_lua_block {
        $init_worker
    }
    server {
        listen 127.0.0.1:\$TEST_NGINX_RAND_PORT_1;
        content_by_lua_block {
            local fmt_nodes = require("k8s_test").fmt_nodes
            local disc = require("$module")
            local sock = assert(ngx.req.socket())
            while true do
                local line = sock:receive("*l")
                if not line then break end
                local out
                if line == "ready" then
                    out = tostring(disc.$ready_fn() and true or false)
                elseif line == "writer" then
                    out = tostring(disc.$dump_fn().status[1].writer_pid)
                else
                    out = fmt_nodes(disc.nodes(line:match("^nodes (.+)\$")))
                end
                sock:send(out .. "\\n")
            end
        }
    }
    server {
        listen 127.0.0.1:\$TEST_NGINX_RAND_PORT_2;
        return "backend \$server_port\\n";
    }
    upstream discovered {
        server 0.0.0.1:1;
        balancer_by_lua_block {
            local nodes = require("$module").nodes("ns-s/backend:tcp")
            assert(require("ngx.balancer").set_current_peer(nodes[1].host, nodes[1].port))
        }
    }
    server {
        listen 127.0.0.1:\$TEST_NGINX_RAND_PORT_3;
        proxy_pass discovered;
    }
}
_EOC_
}

sub main::plain_stream {
    my ($conf, $opts) = @_;
    $opts //= '{}';
    return main::stream_block(qq[require("resty.k8s_disc").init($conf, $opts)],
                              q[require("resty.k8s_disc").init_worker()],
                              'resty.k8s_disc', 'dump', 'ready');
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', main::plain_http(main::disc_conf()))
        unless defined $block->http_config;
    $block->set_value('main_config', main::plain_stream(main::disc_conf()))
        unless defined $block->main_config;
});

plan tests => 12;

run_tests();

__DATA__

=== TEST 1: the same config in http and stream: one watcher in the agent, one region, equal nodes, a stream balancer
--- config
    location = /t {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local t = require("k8s_test")
            local st = require("stream_client")
            assert(t.wait_ready(5))
            local s = st.connect($TEST_NGINX_RAND_PORT_1)
            t.wait_until(function() return s:ask("ready") == "true" end, 5)
            local procs = t.nginx_processes(3 * 1024 * 1024)
            ngx.say("watcher threads: ", t.watcher_threads(procs))
            ngx.say("regions in the master: ", t.region_count(require("ngx.process").get_master_pid(), 3 * 1024 * 1024))
            local agent
            for _, p in ipairs(procs) do
                if p.title == "privileged agent process" then agent = p.pid end
            end
            ngx.say("writer (http): ", k8s_disc.dump().status[1].writer_pid == agent)
            ngx.say("writer (stream): ", tonumber(s:ask("writer")) == agent)
            local http_nodes = t.fmt_nodes(k8s_disc.nodes("ns-a/web:http"))
            ngx.say("http nodes: ", http_nodes)
            ngx.say("stream nodes equal: ", s:ask("nodes ns-a/web:http") == http_nodes)
            ngx.say("stream unknown: ", s:ask("nodes ns-a/nope:http"))
            ngx.say("through the stream balancer: ", st.through_balancer(s, $TEST_NGINX_FAKE_API_PORT,
                    $TEST_NGINX_RAND_PORT_2, $TEST_NGINX_RAND_PORT_3))
        }
    }
--- request
GET /t
--- response_body
watcher threads: privileged agent process=1
regions in the master: 1
writer (http): true
writer (stream): true
http nodes: 10.0.0.1:8080:50 10.0.0.2:8080:50
stream nodes equal: true
stream unknown: nil
through the stream balancer: true
--- grep_error_log eval
qr/watcher started in process \d+/
--- grep_error_log_out eval
qr/^watcher started in process \d+\n$/
--- no_error_log
[error]



=== TEST 2: different configs in http and stream: a region and a watch each, both in the agent, each serving its own
--- http_config eval: main::plain_http(main::disc_conf('namespace_selector = { equal = "ns-a" }'))
--- main_config eval: main::plain_stream(main::disc_conf('namespace_selector = { equal = "ns-b" }'))
--- config
    location = /t {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local t = require("k8s_test")
            local st = require("stream_client")
            local fake = require("fake_api")
            assert(t.wait_ready(5))
            local s = st.connect($TEST_NGINX_RAND_PORT_1)
            t.wait_until(function() return s:ask("ready") == "true" end, 5)
            local procs = t.nginx_processes()
            ngx.say("watcher threads: ", t.watcher_threads(procs))
            ngx.say("regions in the master: ", t.region_count(require("ngx.process").get_master_pid(), 3 * 1024 * 1024))
            ngx.say("active watches: ", fake.stats($TEST_NGINX_FAKE_API_PORT).active_watches)
            ngx.say("http ns-a: ", t.fmt_nodes(k8s_disc.nodes("ns-a/web:http")))
            ngx.say("http ns-b: ", t.fmt_nodes(k8s_disc.nodes("ns-b/web:http")))
            ngx.say("stream ns-a: ", s:ask("nodes ns-a/web:http"))
            ngx.say("stream ns-b: ", s:ask("nodes ns-b/web:http"))
            -- Changes reach each subsystem through its own watcher.
            t.apply($TEST_NGINX_FAKE_API_PORT, t.endpoints("ns-b", "web", {"10.0.0.9"}, {{name = "http", port = 8080}}))
            t.wait_until(function() return s:ask("nodes ns-b/web:http") == "10.0.0.9:8080:50" end, 5)
            ngx.say("stream ns-b changed: ", s:ask("nodes ns-b/web:http"))
            ngx.say("http ns-b still: ", t.fmt_nodes(k8s_disc.nodes("ns-b/web:http")))
        }
    }
--- request
GET /t
--- response_body
watcher threads: privileged agent process=1
regions in the master: 2
active watches: 2
http ns-a: 10.0.0.1:8080:50 10.0.0.2:8080:50
http ns-b: nil
stream ns-a: nil
stream ns-b: 10.0.0.1:8080:50 10.0.0.2:8080:50 10.0.0.3:8080:50
stream ns-b changed: 10.0.0.9:8080:50
http ns-b still: nil
--- no_error_log
[error]



=== TEST 3: the same config with two watcher options is refused at start, naming both
--- http_config eval: main::plain_http(main::disc_conf(), '{ watcher = "auto" }')
--- main_config eval: main::plain_stream(main::disc_conf(), '{ watcher = "worker" }')
--- config
    location = /t { return 200; }
--- must_die
--- error_log eval
qr/the \w+ subsystem initialises the same discovery config as the \w+ subsystem, but with watcher = (auto|worker) where \w+ has watcher = (?!\1)(auto|worker); one config has one watcher/



=== TEST 4: the APISIX adapter in both subsystems, as APISIX's http and stream init call it: one watcher
--- http_config eval
K8sDiscTest::apisix_http_config(main::disc_conf())
--- main_config eval
main::stream_block(
    'require("apisix.core.config_local").set_discovery("kubernetes", ' . main::disc_conf() . ')
        require("apisix.discovery.kubernetes")',
    'require("apisix.discovery.kubernetes").init_worker()',
    'apisix.discovery.kubernetes', 'dump_data', 'check_discovery_ready')
--- config
    location = /t {
        content_by_lua_block {
            local adapter = require("apisix.discovery.kubernetes")
            local t = require("k8s_test")
            local st = require("stream_client")
            t.wait_until(function() return adapter.check_discovery_ready() end, 5)
            local s = st.connect($TEST_NGINX_RAND_PORT_1)
            ngx.say("stream ready: ", t.wait_until(function() return s:ask("ready") == "true" end, 5) == true)
            ngx.say("watcher threads: ", t.watcher_threads(t.nginx_processes()))
            ngx.say("regions in the master: ", t.region_count(require("ngx.process").get_master_pid(), 3 * 1024 * 1024))
            ngx.say("same writer: ", tonumber(s:ask("writer")) == adapter.dump_data().status[1].writer_pid)
            local http_nodes = t.fmt_nodes(adapter.nodes("ns-a/web:http"))
            ngx.say("http: ", http_nodes)
            ngx.say("stream equal: ", s:ask("nodes ns-a/web:http") == http_nodes)
            ngx.say("through the stream balancer: ", st.through_balancer(s, $TEST_NGINX_FAKE_API_PORT,
                    $TEST_NGINX_RAND_PORT_2, $TEST_NGINX_RAND_PORT_3))
        }
    }
--- request
GET /t
--- response_body
stream ready: true
watcher threads: privileged agent process=1
regions in the master: 1
same writer: true
http: 10.0.0.1:8080:50 10.0.0.2:8080:50
stream equal: true
through the stream balancer: true
--- no_error_log
[error]
