# The spine end to end: fake API server -> watcher -> shared memory -> every nginx worker.

use lib 't/lib';
use K8sDiscTest;

master_on();
workers(2);
repeat_each(1);
no_shuffle();
log_level('info');

# Objects present before nginx starts (listed, not watched).
for my $ns ('ns-a', 'ns-b') {
    fake_api('POST', "/api/v1/namespaces/$ns/endpoints", {
        metadata => { name => 'web' },
        subsets  => [{
            addresses => [{ ip => '10.0.0.2' }, { ip => '10.0.0.10' }, { ip => '10.0.0.1' }],
            notReadyAddresses => [{ ip => '10.0.0.99' }],
            ports => [{ name => 'http', port => 8080 }, { port => 9090 }],
        }],
    });
}

# Every block runs with the same discovery config unless it brings its own http_config.
add_block_preprocessor(sub {
    my $block = shift;
    if (!defined $block->http_config) {
        $block->set_value('http_config', <<'_EOC_');
    init_by_lua_block {
        require("resty.k8s_disc").init({
            service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" },
            client = { token = "test-token" },
            shared_size = "1m",
        })
    }
    init_worker_by_lua_block {
        local k8s_disc = require("resty.k8s_disc")
        k8s_disc.init_worker()
        -- Each worker reports once what it sees, so the test can check every worker, not just one.
        local function report(premature, tries)
            if premature then return end
            local nodes = k8s_disc.nodes("ns-a/web:http")
            if nodes then
                ngx.log(ngx.INFO, "worker ", ngx.worker.id(), " sees ", #nodes, " nodes")
            elseif tries < 500 then
                ngx.timer.at(0.01, report, tries + 1)
            end
        end
        ngx.timer.at(0, report, 0)
    }
_EOC_
    }
});

plan tests => 40;

run_tests();

__DATA__

=== TEST 1: nodes are visible from every worker, sorted by host then port, not-ready addresses left out
--- config
    location = /t {
        content_by_lua_block {
            local t = require("k8s_test")
            assert(t.wait_ready(5), "discovery not ready")
            local cjson = require("cjson")
            for _, n in ipairs(require("resty.k8s_disc").nodes("ns-a/web:http")) do
                ngx.say(n.host, " ", n.port, " ", n.weight)
            end
            ngx.sleep(0.3)
        }
    }
--- request
GET /t
--- response_body
10.0.0.1 8080 50
10.0.0.10 8080 50
10.0.0.2 8080 50
--- error_log
worker 0 sees 3 nodes
worker 1 sees 3 nodes
--- no_error_log
[error]



=== TEST 2: unknown service, unknown port and malformed names give nil; unnamed ports by number
--- config
    location = /t {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            assert(require("k8s_test").wait_ready(5))
            for _, name in ipairs({"ns-a/web:grpc", "ns-a/nope:http", "ns-c/web:http", "ns-a/web", "", "ns-a/web:9090"}) do
                local nodes = k8s_disc.nodes(name)
                ngx.say(name, " -> ", nodes and #nodes or "nil")
            end
            ngx.say("number -> ", tostring((k8s_disc.nodes(42))))
        }
    }
--- request
GET /t
--- response_body
ns-a/web:grpc -> nil
ns-a/nope:http -> nil
ns-c/web:http -> nil
ns-a/web -> nil
 -> nil
ns-a/web:9090 -> 3
number -> nil
--- no_error_log
[error]



=== TEST 3: the same table while unchanged, a new one on change, and the old one is never modified
--- config
    location = /t {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local t = require("k8s_test")
            local port = $TEST_NGINX_FAKE_API_PORT
            assert(t.wait_ready(5))
            local first = k8s_disc.nodes("ns-b/web:http")
            ngx.say("same while unchanged: ", first == k8s_disc.nodes("ns-b/web:http"))
            -- A change to another service leaves this one's table alone.
            t.apply(port, t.endpoints("ns-b", "other", {"10.9.9.9"}, {{name = "http", port = 1}}))
            assert(t.wait_until(function() return k8s_disc.nodes("ns-b/other:http") end, 5))
            ngx.say("same after another service changed: ", first == k8s_disc.nodes("ns-b/web:http"))
            t.apply(port, t.endpoints("ns-b", "web", {"10.0.0.7"}, {{name = "http", port = 8080}}))
            local second = t.wait_until(function()
                local n = k8s_disc.nodes("ns-b/web:http")
                return n ~= first and n
            end, 5)
            ngx.say("new table on change: ", second ~= nil and second ~= first)
            ngx.say("new content: ", second[1].host, " ", #second)
            ngx.say("old table untouched: ", #first, " ", first[1].host)
        }
    }
--- request
GET /t
--- response_body
same while unchanged: true
same after another service changed: true
new table on change: true
new content: 10.0.0.7 1
old table untouched: 3 10.0.0.1
--- no_error_log
[error]



=== TEST 4: a change to a large service reuses the unchanged node tables, even after the caller sorted and replaced elements
--- config
    location = /t {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local t = require("k8s_test")
            local port = $TEST_NGINX_FAKE_API_PORT
            assert(t.wait_ready(5))
            local ips = {}
            for i = 1, 40 do ips[i] = "10.4.0." .. i end
            t.apply(port, t.endpoints("ns-b", "big", ips, {{name = "http", port = 8080}}))
            local first = t.wait_until(function()
                local n = k8s_disc.nodes("ns-b/big:http")
                return n and #n == 40 and n
            end, 5)
            local by_host = {}
            for _, n in ipairs(first) do by_host[n.host] = n end
            -- What APISIX does to an answer: sort it in place and put its own tables in it.
            table.sort(first, function(a, b) return a.host > b.host end)
            first[1] = { host = first[1].host, port = first[1].port, weight = first[1].weight, priority = 0 }
            -- One endpoint leaves (10.4.0.7), one arrives (10.4.0.99).
            local next_ips = {}
            for i = 1, 40 do if i ~= 7 then next_ips[#next_ips + 1] = "10.4.0." .. i end end
            next_ips[#next_ips + 1] = "10.4.0.99"
            t.apply(port, t.endpoints("ns-b", "big", next_ips, {{name = "http", port = 8080}}))
            local second = t.wait_until(function()
                local n = k8s_disc.nodes("ns-b/big:http")
                return n and n ~= first and n
            end, 5)
            local reused, fresh, sorted, extra_fields = 0, {}, true, 0
            for i, n in ipairs(second) do
                if by_host[n.host] == n then reused = reused + 1 else fresh[#fresh + 1] = n.host end
                if n.priority ~= nil then extra_fields = extra_fields + 1 end
                if i > 1 and second[i - 1].host >= n.host then sorted = false end
            end
            ngx.say("count: ", #second, ", sorted by host: ", sorted)
            ngx.say("reused: ", reused, ", built: ", table.concat(fresh, " "))
            ngx.say("caller's own tables taken: ", extra_fields)
            ngx.say("gone: ", tostring(by_host["10.4.0.7"] ~= nil), " ",
                    tostring((function() for _, n in ipairs(second) do if n.host == "10.4.0.7" then return true end end return false end)()))
            -- A third version (its private list is the first one's, refilled): still right, still reusing.
            local third_ips = {}
            for i = 1, 40 do if i ~= 7 and i ~= 20 then third_ips[#third_ips + 1] = "10.4.0." .. i end end
            third_ips[#third_ips + 1] = "10.4.0.99"
            t.apply(port, t.endpoints("ns-b", "big", third_ips, {{name = "http", port = 8080}}))
            local third = t.wait_until(function()
                local n = k8s_disc.nodes("ns-b/big:http")
                return n and n ~= second and n
            end, 5)
            local same, hosts = 0, {}
            for i, n in ipairs(third) do
                hosts[i] = n.host
                for _, m in ipairs(second) do if m == n then same = same + 1 end end
            end
            table.sort(hosts)
            ngx.say("third: ", #third, " nodes, ", same, " from the second, has 10.4.0.20: ",
                    tostring(table.concat(hosts, " "):find("10.4.0.20 ", 1, true) ~= nil))
        }
    }
--- request
GET /t
--- response_body
count: 40, sorted by host: true
reused: 39, built: 10.4.0.99
caller's own tables taken: 0
gone: true false
third: 39 nodes, 39 from the second, has 10.4.0.20: false
--- no_error_log
[error]



=== TEST 5: an update and a delete reach the workers within a bounded time
--- config
    location = /t {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local t = require("k8s_test")
            local port = $TEST_NGINX_FAKE_API_PORT
            assert(t.wait_ready(5))
            t.apply(port, t.endpoints("ns-a", "web", {"10.0.0.1", "10.0.0.5"}, {{name = "http", port = 8080}}))
            local ok, took = t.wait_until(function()
                local n = k8s_disc.nodes("ns-a/web:http")
                return n and #n == 2 and n[2].host == "10.0.0.5"
            end, 2)
            ngx.say("update within 2s: ", ok == true)
            t.delete(port, "Endpoints", "ns-a", "web")
            ok, took = t.wait_until(function() return k8s_disc.nodes("ns-a/web:http") == nil end, 2)
            ngx.say("delete within 2s: ", ok == true)
            ngx.say("port gone too: ", k8s_disc.nodes("ns-a/web:9090") == nil)
        }
    }
--- request
GET /t
--- response_body
update within 2s: true
delete within 2s: true
port gone too: true
--- no_error_log
[error]



=== TEST 6: an invalid config stops nginx from starting, naming the field, value and rule
--- http_config
    init_by_lua_block {
        require("resty.k8s_disc").init({
            service = { schema = "http", host = "127.0.0.1", port = "99999" },
            client = { token = "t" },
        })
    }
--- config
    location = /t { return 200; }
--- must_die
--- error_log
invalid discovery config: service.port = "99999"



=== TEST 7: nginx -s reload keeps serving and leaves exactly one watcher
--- config
    location = /reload {
        content_by_lua_block {
            assert(require("k8s_test").wait_ready(5))
            local ffi = require("ffi")
            ffi.cdef("int kill(int pid, int sig);")
            local f = assert(io.open(ngx.config.prefix() .. "logs/nginx.pid"))
            local pid = tonumber(f:read("*l"))
            f:close()
            ngx.say("reload signalled: ", ffi.C.kill(pid, 1) == 0)
        }
    }
    location = /after {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local t = require("k8s_test")
            local fake = require("fake_api")
            local port = $TEST_NGINX_FAKE_API_PORT
            local nodes = t.wait_until(function() return k8s_disc.nodes("ns-b/web:http") end, 5)
            ngx.say("serving after reload: ", nodes ~= nil)
            -- The new watcher takes over; the old one drops its watch within about a second.
            ngx.sleep(2.5)
            local stats = fake.stats(port)
            ngx.say("active watches: ", stats.active_watches)
            -- And the new watcher is the one that publishes.
            t.apply(port, t.endpoints("ns-b", "web", {"10.0.0.8"}, {{name = "http", port = 8080}}))
            local ok = t.wait_until(function()
                local n = k8s_disc.nodes("ns-b/web:http")
                return n and n[1].host == "10.0.0.8"
            end, 3)
            ngx.say("changes still arrive: ", ok == true)
        }
    }
--- timeout: 10
--- request eval
["GET /reload", "GET /after"]
--- response_body eval
["reload signalled: true\n", "serving after reload: true\nactive watches: 1\nchanges still arrive: true\n"]
--- no_error_log
[error]



=== TEST 8: a killed watcher is respawned, relists, and the last good data is served meanwhile
--- config
    location = /kill {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            assert(require("k8s_test").wait_ready(5))
            local writer = k8s_disc.dump().status[1].writer_pid
            local ffi = require("ffi")
            ffi.cdef("int kill(int pid, int sig);")
            ngx.say("have a writer: ", writer > 0)
            local f = assert(io.open(ngx.config.prefix() .. "logs/killed-writer.pid", "w"))
            f:write(writer)
            f:close()
            if writer == ngx.worker.pid() then
                -- Do not die mid-response: kill this process once the response is out.
                ngx.eof()
                ngx.timer.at(0.05, function() ffi.C.kill(writer, 9) end)
                ngx.sleep(1)
            else
                ffi.C.kill(writer, 9)
            end
        }
    }
    location = /after {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local t = require("k8s_test")
            local port = $TEST_NGINX_FAKE_API_PORT
            ngx.say("data kept: ", k8s_disc.nodes("ns-b/web:http") ~= nil)
            local f = assert(io.open(ngx.config.prefix() .. "logs/killed-writer.pid"))
            local killed = tonumber(f:read("*a"))
            f:close()
            local relisted = t.wait_until(function()
                local st = k8s_disc.dump().status[1]
                return st.writer_pid ~= killed and st.state == "watching"
            end, 5)
            ngx.say("new watcher relisted: ", relisted == true)
            t.apply(port, t.endpoints("ns-b", "web", {"10.0.0.11"}, {{name = "http", port = 8080}}))
            local ok = t.wait_until(function()
                local n = k8s_disc.nodes("ns-b/web:http")
                return n and n[1].host == "10.0.0.11"
            end, 3)
            ngx.say("changes arrive again: ", ok == true)
        }
    }
--- timeout: 10
--- request eval
["GET /kill", "GET /after"]
--- response_body eval
["have a writer: true\n", "data kept: true\nnew watcher relisted: true\nchanges arrive again: true\n"]
--- no_error_log
[error]



=== TEST 9: init() outside init_by_lua is refused with a clear message
--- config
    location = /t {
        content_by_lua_block {
            local ok, err = pcall(require("resty.k8s_disc").init, { client = { token = "t" } })
            ngx.say(ok, " ", err)
            -- And the module still serves what the master initialised.
            assert(require("k8s_test").wait_ready(5))
            ngx.say(require("resty.k8s_disc").nodes("ns-b/web:http") ~= nil)
        }
    }
--- request
GET /t
--- response_body
false k8s-disc: init() must be called in init_by_lua (the master), not in a worker process
true
--- no_error_log
[error]



=== TEST 10: a reload that fails after init (a changed config, then a bad directive) leaves the running config ready
--- http_config
    init_by_lua_block {
        local f = io.open(ngx.config.prefix() .. "conf/weight")
        local weight = f and tonumber(f:read("*l")) or 50
        if f then f:close() end
        require("resty.k8s_disc").init({
            service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" },
            client = { token = "test-token" },
            shared_size = "1m",
            default_weight = weight,
        })
    }
    init_worker_by_lua_block {
        require("resty.k8s_disc").init_worker()
    }
--- config
    location = /reload {
        content_by_lua_block {
            local t = require("k8s_test")
            local prefix = ngx.config.prefix()
            assert(t.wait_ready(5))
            -- The new cycle's init builds a changed config on the same region; then nginx.conf fails to load.
            local f = assert(io.open(prefix .. "conf/weight", "w"))
            f:write("9\n")
            f:close()
            f = assert(io.open(prefix .. "conf/nginx.conf", "a"))
            f:write("\nk8s_disc_no_such_directive on;\n")
            f:close()
            assert(t.kill(require("ngx.process").get_master_pid(), 1))
            local failed = t.wait_until(function()
                local log = t.read_file(prefix .. "logs/error.log") or ""
                return log:find('unknown directive "k8s_disc_no_such_directive"', 1, true) ~= nil
            end, 5)
            ngx.say("reload failed: ", failed == true)
        }
    }
    location = /after {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            ngx.say("ready: ", k8s_disc.ready())
            ngx.say("dump ready: ", k8s_disc.dump().status[1].ready)
            local n = k8s_disc.nodes("ns-b/web:http")
            ngx.say("served with the running config's weight: ", n and n[1].weight)
        }
    }
--- request eval
["GET /reload", "GET /after"]
--- response_body eval
["reload failed: true\n", "ready: true\ndump ready: true\nserved with the running config's weight: 50\n"]
--- no_error_log
[error]
