# The production process model on an nginx with the privileged agent (OpenResty, APISIX): where the watcher
# runs, how it survives the agent being killed, reloads and a graceful quit. Skipped, saying why, on an nginx
# without the agent (Debian's); t/032-no-agent.t covers that one.

use lib 't/lib';
use K8sDiscTest;

skip_unless('privileged_agent');

master_on();
workers(2);
repeat_each(1);
no_shuffle();
log_level('info');

fake_api('POST', '/api/v1/namespaces/ns-a/endpoints', {
    metadata => { name => 'web' },
    subsets  => [{
        addresses => [{ ip => '10.0.0.1' }, { ip => '10.0.0.2' }],
        ports     => [{ name => 'http', port => 8080 }],
    }],
});

# The discovery config of every block: shared_size 3m or the MiB in conf/size (sizes nginx's own shared zones
# never have, so the region can be counted in /proc/PID/maps), the weight from conf/weight (100 without it; a
# reload can change both), and the watcher option given.
sub main::http_config {
    my ($watcher) = @_;
    return <<"_EOC_";
    init_by_lua_block {
        local function setting(name, default)
            local f = io.open(ngx.config.prefix() .. "conf/" .. name)
            if not f then return default end
            local v = f:read("*l")
            f:close()
            return v
        end
        require("resty.k8s_disc").init({
            service = { schema = "http", host = "127.0.0.1", port = "\$TEST_NGINX_FAKE_API_PORT" },
            client = { token = "t" },
            shared_size = setting("size", "3") .. "m",
            default_weight = tonumber(setting("weight", "100")),
        }, { watcher = "$watcher" })
    }
    init_worker_by_lua_block {
        require("resty.k8s_disc").init_worker()
    }
_EOC_
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', main::http_config('auto')) unless defined $block->http_config;
});

plan tests => 29;

run_tests();

__DATA__

=== TEST 1: watcher = "auto" runs the one watcher thread in the privileged agent, which is the region's writer
--- config
    location = /t {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local t = require("k8s_test")
            assert(t.wait_ready(5))
            local procs, master = t.nginx_processes(3 * 1024 * 1024)
            local agent
            for _, p in ipairs(procs) do
                if p.title == "privileged agent process" then agent = p end
            end
            ngx.say("watcher threads: ", t.watcher_threads(procs))
            ngx.say("writer is the agent: ", k8s_disc.dump().status[1].writer_pid == agent.pid)
            ngx.say("regions in the master: ", t.region_count(master, 3 * 1024 * 1024))
            ngx.say("regions in the agent: ", agent.regions)
            ngx.say("nodes: ", t.count("ns-a/web:http"))
        }
    }
--- request
GET /t
--- response_body
watcher threads: privileged agent process=1
writer is the agent: true
regions in the master: 1
regions in the agent: 1
nodes: 2
--- grep_error_log eval
qr/watcher started in process \d+/
--- grep_error_log_out eval
qr/^watcher started in process \d+\n$/
--- no_error_log
[error]



=== TEST 2: kill -9 of the agent: nginx respawns it, the new agent takes the region over, nothing is lost meanwhile
--- config
    location = /kill {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local t = require("k8s_test")
            assert(t.wait_ready(5))
            local writer = k8s_disc.dump().status[1].writer_pid
            local f = assert(io.open(ngx.config.prefix() .. "logs/killed-agent.pid", "w"))
            f:write(writer)
            f:close()
            ngx.say("killed: ", t.kill(writer, 9))
        }
    }
    location = /after {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local t = require("k8s_test")
            local port = $TEST_NGINX_FAKE_API_PORT
            ngx.say("served meanwhile: ", t.count("ns-a/web:http"))
            local killed = tonumber(t.read_file(ngx.config.prefix() .. "logs/killed-agent.pid"))
            local agent = t.wait_until(function()
                for _, p in ipairs(t.nginx_processes()) do
                    if p.title == "privileged agent process" and p.pid ~= killed then return p.pid end
                end
            end, 5)
            ngx.say("agent respawned: ", agent ~= nil)
            local took_over = t.wait_until(function()
                local st = k8s_disc.dump().status[1]
                return st.writer_pid == agent and st.state == "watching"
            end, 5)
            ngx.say("new agent writes: ", took_over == true)
            ngx.say("watcher threads: ", t.watcher_threads(t.nginx_processes()))
            t.apply(port, t.endpoints("ns-a", "web", {"10.0.0.7"}, {{name = "http", port = 8080}}))
            local ok = t.wait_until(function()
                local n = k8s_disc.nodes("ns-a/web:http")
                return n and #n == 1 and n[1].host == "10.0.0.7"
            end, 3)
            ngx.say("changes arrive: ", ok == true)
        }
    }
--- timeout: 15
--- request eval
["GET /kill", "GET /after"]
--- response_body eval
["killed: true\n",
"served meanwhile: 2\nagent respawned: true\nnew agent writes: true\nwatcher threads: privileged agent process=1\nchanges arrive: true\n"]
--- no_error_log
[error]



=== TEST 3: reloads (same config, changed weight, changed size) leave one watcher thread, one region and one watch
--- config
    location = /reload {
        content_by_lua_block {
            local t = require("k8s_test")
            assert(t.wait_ready(5))
            for _, name in ipairs({"weight", "size"}) do
                local v = ngx.var["arg_" .. name]
                if v then
                    local f = assert(io.open(ngx.config.prefix() .. "conf/" .. name, "w"))
                    f:write(v, "\n")
                    f:close()
                end
            end
            ngx.say("reloaded: ", t.reload(5))
        }
    }
    location = /after {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local t = require("k8s_test")
            local fake = require("fake_api")
            local mib = tonumber(ngx.var.arg_size or 3)
            local size = mib * 1024 * 1024
            -- Requests reach the new workers once the old ones have closed their listeners.
            local weight = tonumber(ngx.var.arg_weight)
            local nodes = t.wait_until(function()
                local n = k8s_disc.nodes("ns-a/web:http")
                return n and n[1].weight == weight and n
            end, 5)
            ngx.say("new config served: ", nodes ~= nil)
            -- Old workers and the old agent exit on their own; wait for that.
            local procs = t.wait_until(function()
                local procs = t.nginx_processes(size)
                for _, p in ipairs(procs) do
                    if p.title:find("shutting down", 1, true) then return nil end
                end
                return #procs == 3 and procs
            end, 10)
            local master = require("ngx.process").get_master_pid()
            ngx.say("processes: ", procs and #procs)
            ngx.say("watcher threads: ", procs and t.watcher_threads(procs))
            ngx.say("regions in the master: ", t.region_count(master, size), " of ", mib, " MiB, ",
                    t.region_count(master, (8 - mib) * 1024 * 1024), " of ", 8 - mib, " MiB")
            local watches = t.wait_until(function()
                local n = fake.stats($TEST_NGINX_FAKE_API_PORT).active_watches
                return n == 1 and n
            end, 5)
            ngx.say("active watches: ", watches)
        }
    }
--- timeout: 30
--- request eval
["GET /reload", "GET /after?weight=100", "GET /reload?weight=7", "GET /after?weight=7",
 "GET /reload?size=5", "GET /after?weight=7&size=5"]
--- response_body eval
["reloaded: true\n",
"new config served: true\nprocesses: 3\nwatcher threads: privileged agent process=1\nregions in the master: 1 of 3 MiB, 0 of 5 MiB\nactive watches: 1\n",
"reloaded: true\n",
"new config served: true\nprocesses: 3\nwatcher threads: privileged agent process=1\nregions in the master: 1 of 3 MiB, 0 of 5 MiB\nactive watches: 1\n",
"reloaded: true\n",
"new config served: true\nprocesses: 3\nwatcher threads: privileged agent process=1\nregions in the master: 1 of 5 MiB, 0 of 3 MiB\nactive watches: 1\n"]



=== TEST 4: nginx -s quit with the agent: the agent exits and its watch is closed
--- config
    location = /quit {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local t = require("k8s_test")
            local fake = require("fake_api")
            local port = $TEST_NGINX_FAKE_API_PORT
            assert(t.wait_ready(5))
            local agent = k8s_disc.dump().status[1].writer_pid
            ngx.say("active watches before: ", fake.stats(port).active_watches)
            ngx.say("quit signalled: ", t.kill(require("ngx.process").get_master_pid(), 3))
            -- This worker finishes the request while the rest of nginx shuts down.
            local gone = t.wait_until(function() return not t.alive(agent) end, 5)
            ngx.say("agent exited: ", gone == true)
            local closed = t.wait_until(function() return fake.stats(port).active_watches == 0 end, 5)
            ngx.say("watch closed: ", closed == true)
        }
    }
--- timeout: 15
--- request
GET /quit
--- response_body
active watches before: 1
quit signalled: true
agent exited: true
watch closed: true



=== TEST 5: watcher = "worker" on the agent build: worker 0 runs the watcher and no agent is started
--- http_config eval: main::http_config('worker')
--- config
    location = /t {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local t = require("k8s_test")
            assert(t.wait_ready(5))
            local procs = t.nginx_processes()
            local agents, watcher_pid = 0, nil
            for _, p in ipairs(procs) do
                if p.title == "privileged agent process" then agents = agents + 1 end
                if p.threads["k8s-disc"] then watcher_pid = p.pid end
            end
            ngx.say("agents: ", agents)
            ngx.say("watcher threads: ", t.watcher_threads(procs))
            ngx.say("writer is the watcher worker: ", k8s_disc.dump().status[1].writer_pid == watcher_pid)
            ngx.say("nodes: ", t.count("ns-a/web:http"))
        }
    }
--- request
GET /t
--- response_body
agents: 0
watcher threads: worker process=1
writer is the watcher worker: true
nodes: 1
--- no_error_log
[error]



=== TEST 6: kill -9 of the agent again and again while it lists and writes 3000 services: never torn, never empty
--- config
    location = /t {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local t = require("k8s_test")
            local fake = require("fake_api")
            local cjson = require("cjson.safe")
            local port = $TEST_NGINX_FAKE_API_PORT
            local items = {}
            for i = 1, 3000 do
                items[i] = t.endpoints("ns-big", "svc" .. i, {"10.9." .. (i % 200) .. "." .. (i % 250)},
                                       {{name = "http", port = 8000 + i % 1000}})
            end
            assert(fake.request(port, "POST", "/fake/apply", cjson.encode(items)) == 200)
            assert(t.wait_until(function() return k8s_disc.nodes("ns-big/svc3000:http") end, 10))
            local steady = k8s_disc.nodes("ns-a/web:http")
            local empty, kills = 0, 0
            -- A reader in this worker that checks a service the kills must never take away.
            local done = false
            local reader = ngx.thread.spawn(function()
                while not done do
                    if not k8s_disc.nodes("ns-a/web:http") then empty = empty + 1 end
                    ngx.sleep(0.001)
                end
            end)
            local last
            for i = 1, 10 do
                local agent = t.wait_until(function()
                    for _, p in ipairs(t.nginx_processes()) do
                        if p.title == "privileged agent process" and p.pid ~= last and p.threads["k8s-disc"] then
                            return p.pid
                        end
                    end
                end, 10)
                if not agent then break end
                -- Somewhere in its list and the batch that writes it.
                ngx.sleep(math.random() * 0.08)
                if t.kill(agent, 9) then kills = kills + 1 end
                last = agent
            end
            ngx.say("kills: ", kills)
            local converged = t.wait_until(function()
                local st = k8s_disc.dump().status[1]
                if st.state ~= "watching" or st.writer_pid == last then return false end
                for i = 1, 3000 do
                    local n = k8s_disc.nodes("ns-big/svc" .. i .. ":http")
                    if not n or #n ~= 1 or n[1].port ~= 8000 + i % 1000
                       or n[1].host ~= "10.9." .. (i % 200) .. "." .. (i % 250) then
                        return false
                    end
                end
                return true
            end, 20)
            done = true
            ngx.thread.wait(reader)
            ngx.say("all 3000 services correct after the kills: ", converged == true)
            ngx.say("lookups of a steady service that came back empty: ", empty)
            ngx.say("steady service unchanged: ", t.fmt_nodes(k8s_disc.nodes("ns-a/web:http")) == t.fmt_nodes(steady))
        }
    }
--- timeout: 60
--- request
GET /t
--- response_body
kills: 10
all 3000 services correct after the kills: true
lookups of a steady service that came back empty: 0
steady service unchanged: true
