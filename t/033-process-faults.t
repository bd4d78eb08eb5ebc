# Process faults on any nginx build: many reloads, reloads under load, a reload that adds a cluster. The watcher
# runs in the privileged agent where there is one, else in worker 0; the checks hold either way.

use lib 't/lib';
use K8sDiscTest;

master_on();
workers(2);
repeat_each(1);
no_shuffle();
log_level('info');

fake_api('POST', '/fake/apply', [ map {
    { kind => 'Endpoints', apiVersion => 'v1', metadata => { namespace => 'ns-a', name => "svc$_" },
      subsets => [{ addresses => [{ ip => '10.1.0.1' }, { ip => '10.1.0.2' }],
                    ports => [{ name => 'http', port => 8080 }] }] }
} 1 .. 20 ]);

# The discovery config: one cluster ("a"), or two ("a" and "b") when conf/clusters says 2; the weight from
# conf/weight (50 without it), so that a reload can change the config. Both clusters watch the same fake.
add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', <<'_EOC_') unless defined $block->http_config;
    init_by_lua_block {
        local function setting(name, default)
            local f = io.open(ngx.config.prefix() .. "conf/" .. name)
            if not f then return default end
            local v = f:read("*l")
            f:close()
            return v
        end
        local function cluster(id)
            return { id = id, service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" },
                     client = { token = "t" }, shared_size = "3m", default_weight = tonumber(setting("weight", "50")) }
        end
        local conf = { cluster("a") }
        if setting("clusters", "1") == "2" then conf[2] = cluster("b") end
        require("resty.k8s_disc").init(conf)
    }
    init_worker_by_lua_block {
        require("resty.k8s_disc").init_worker()
    }
_EOC_
});

plan tests => 10;

run_tests();

__DATA__

=== TEST 1: 100 reloads, half of them with a changed config: the master's memory and region count stay flat
--- config
    location = /t {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local t = require("k8s_test")
            local master = require("ngx.process").get_master_pid()
            local size = 3 * 1024 * 1024
            local function rss_kib()
                return tonumber(t.read_file("/proc/" .. master .. "/status"):match("VmRSS:%s*(%d+)"))
            end
            local function set_weight(w)
                local f = assert(io.open(ngx.config.prefix() .. "conf/weight", "w"))
                f:write(w, "\n")
                f:close()
            end
            assert(t.wait_ready(5))
            local rss = {}
            for i = 1, 100 do
                set_weight(i % 2 == 0 and 50 or 7)
                assert(t.reload(10), "reload " .. i)
                if i == 20 then rss[1] = rss_kib() end
            end
            rss[2] = rss_kib()
            ngx.say("regions in the master: ", t.region_count(master, size))
            -- Growth between reload 20 and reload 100, when every cycle would leave something behind.
            local growth = rss[2] - rss[1]
            ngx.say("master RSS growth over 80 reloads under 2 MiB: ", growth < 2048 or growth .. " KiB")
            local procs = t.wait_until(function()
                local procs = t.nginx_processes()
                for _, p in ipairs(procs) do
                    if p.title:find("shutting down", 1, true) and p.pid ~= ngx.worker.pid() then return nil end
                end
                return procs
            end, 10)
            -- This worker outlives the reloads while it serves this request; its own thread (it may have been
            -- the first watcher, on nginx without an agent) stopped writing and goes when the process exits.
            local threads = 0
            for _, p in ipairs(procs or {}) do
                if p.pid ~= ngx.worker.pid() then
                    threads = threads + (p.threads["k8s-disc"] or 0)
                end
            end
            ngx.say("watcher threads: ", threads)
            local fake = require("fake_api")
            ngx.say("active watches: ", t.wait_until(function()
                return fake.stats($TEST_NGINX_FAKE_API_PORT).active_watches == 1
            end, 5) == true)
        }
    }
--- timeout: 120
--- request
GET /t
--- response_body
regions in the master: 1
master RSS growth over 80 reloads under 2 MiB: true
watcher threads: 1
active watches: true



=== TEST 2: lookups never come back empty while nginx reloads under load
--- config
    location = /lookup {
        content_by_lua_block {
            local n = require("resty.k8s_disc").nodes("a/ns-a/svc" .. ngx.var.arg_i .. ":http")
            ngx.print(n and #n or 0)
        }
    }
    location = /t {
        content_by_lua_block {
            local t = require("k8s_test")
            assert(t.wait_ready(5))
            local done, requests, empty, failed = false, 0, 0, 0
            local function client()
                while not done do
                    local sock = ngx.socket.tcp()
                    sock:settimeout(5000)
                    local ok = sock:connect("127.0.0.1", ngx.var.server_port)
                    if ok then
                        local i = requests % 20 + 1
                        sock:send("GET /lookup?i=" .. i .. " HTTP/1.0\r\nHost: localhost\r\n\r\n")
                        local resp = sock:receive("*a")
                        requests = requests + 1
                        local body = resp and resp:match("\r\n\r\n(.*)$")
                        if body ~= "2" then empty = empty + 1 end
                        sock:close()
                    else
                        failed = failed + 1
                    end
                end
            end
            local clients = {}
            for i = 1, 4 do clients[i] = ngx.thread.spawn(client) end
            for i = 1, 10 do
                local f = assert(io.open(ngx.config.prefix() .. "conf/weight", "w"))
                f:write(i % 2 == 0 and "50\n" or "7\n")
                f:close()
                assert(t.reload(10))
                ngx.sleep(0.1)
            end
            done = true
            for _, c in ipairs(clients) do ngx.thread.wait(c) end
            ngx.say("requests: ", requests > 100 or requests)
            ngx.say("empty answers: ", empty)
            ngx.say("connection failures: ", failed)
        }
    }
--- timeout: 60
--- request
GET /t
--- response_body
requests: true
empty answers: 0
connection failures: 0



=== TEST 3: a reload that adds a cluster keeps the first one's region and data and serves the new one
--- config
    location = /reload {
        content_by_lua_block {
            local t = require("k8s_test")
            assert(t.wait_ready(5))
            local f = assert(io.open(ngx.config.prefix() .. "conf/clusters", "w"))
            f:write("2\n")
            f:close()
            ngx.say("reloaded: ", t.reload(10))
        }
    }
    location = /after {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local t = require("k8s_test")
            local master = require("ngx.process").get_master_pid()
            ngx.say("a served: ", t.count("a/ns-a/svc1:http"))
            ngx.say("b served: ", t.wait_until(function() return t.count("b/ns-a/svc1:http") == 2 end, 5) == true)
            ngx.say("ready: ", t.wait_ready(5) == true)
            ngx.say("regions in the master: ", t.region_count(master, 3 * 1024 * 1024))
            local dump = k8s_disc.dump()
            ngx.say("clusters in the dump: ", #dump.status)
        }
    }
--- request eval
["GET /reload", "GET /after"]
--- response_body eval
["reloaded: true\n", "a served: 2\nb served: true\nready: true\nregions in the master: 2\nclusters in the dump: 2\n"]
--- no_error_log
[error]
