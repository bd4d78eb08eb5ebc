-- The nginx side of the benchmark (benches/gateway.py): timings taken inside the workers, where nodes() runs.
-- Every handler answers one JSON document. Times are CLOCK_MONOTONIC nanoseconds, the clock the driver reads too.
-- The discovery measured is resty.k8s_disc unless init_worker is given another one with the same nodes() and
-- ready() (inside APISIX: either kubernetes discovery module, through the k8s-disc-bench plugin).

local ffi = require("ffi")
local cjson = require("cjson.safe")
local ok_new_tab, new_tab = pcall(require, "table.new")
if not ok_new_tab then
    new_tab = function() return {} end
end
local disc  -- the discovery measured, set by init_worker

ffi.cdef [[
struct k8s_disc_bench_ts { long sec; long nsec; };
int clock_gettime(int clk, struct k8s_disc_bench_ts *ts);
]]
-- Another module may have declared them already.
pcall(ffi.cdef, "void *malloc(size_t size); void free(void *ptr);")
local ts = ffi.new("struct k8s_disc_bench_ts")
local CLOCK_MONOTONIC = 1

local function now_ns()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
    return tonumber(ts.sec) * 1e9 + tonumber(ts.nsec)
end

local _M = {}

local keys         -- { {name, count}, ... } from the driver's keys.json: the regular services
local hosts_path   -- the driver's hosts.bin, beside keys.json: the keys' nodes as bytes (alloc_floor)
local walked = false

local function read_keys(path)
    local f = assert(io.open(path, "rb"))
    local doc = assert(cjson.decode(f:read("*a")))
    f:close()
    return doc
end

-- Private (anonymous) resident memory of this process in KiB: the shared region is not counted.
local function rss_anon_kib()
    local f = io.open("/proc/self/status", "rb")
    if not f then
        return nil
    end
    local text = f:read("*a")
    f:close()
    return tonumber(text:match("RssAnon:%s*(%d+)"))
end

local function reply(doc)
    ngx.header.content_type = "application/json"
    ngx.say(cjson.encode(doc))
end

-- Notes, the first time any worker sees it, when each cluster reports ready in the metrics (k8s_disc_ready), and
-- what reading the metrics cost the workers meanwhile (it competes with the sync for the cores).
local function note_ready_clusters(dict)
    local t0 = now_ns()
    for id, ready in disc.metrics():gmatch('k8s_disc_ready{cluster="([^"]*)"} (%d)') do
        if ready == "1" then
            dict:add("cluster:" .. id, now_ns())
        end
    end
    dict:incr("poll_ns", now_ns() - t0, 0)
end

-- init_worker: note when this worker first sees discovery ready (polled every millisecond); with `per_cluster`,
-- also when each cluster does, read every 5 ms by the last worker only (the watcher runs in worker 0 or the agent),
-- as rendering the metrics costs tens of microseconds.
function _M.init_worker(keys_path, discovery, per_cluster)
    disc = discovery or require("resty.k8s_disc")
    keys = read_keys(keys_path)
    hosts_path = (keys_path:match("^(.*/)") or "./") .. "hosts.bin"
    local dict = ngx.shared.bench
    local per_cluster_here = per_cluster and ngx.worker.id() == ngx.worker.count() - 1
    local ticks = 0
    local function poll(premature)
        if premature then
            return
        end
        local ready = disc.ready()
        if per_cluster_here and (ready or ticks % 5 == 0) then
            note_ready_clusters(dict)
        end
        ticks = ticks + 1
        if ready then
            dict:set("ready:" .. ngx.worker.id(), now_ns())
            return
        end
        ngx.timer.at(0.001, poll)
    end
    ngx.timer.at(0, poll)
end

-- Adds to `out` every stamp of the bench dict whose key matches `pattern`, under the pattern's capture.
local function stamps(pattern, out)
    for _, k in ipairs(ngx.shared.bench:get_keys(0)) do
        local id = k:match(pattern)
        if id then
            out[id] = ngx.shared.bench:get(k)
        end
    end
    return out
end

-- GET /bench/sync: {worker id: monotonic ns when it first saw ready}.
function _M.sync()
    reply(stamps("^ready:(%d+)$", {}))
end

-- GET /bench/clusters: {cluster id: monotonic ns when a worker first saw it ready} (per_cluster only), and
-- poll_ns: the workers' time spent reading the metrics for it.
function _M.clusters()
    reply(stamps("^cluster:(.*)$", { poll_ns = ngx.shared.bench:get("poll_ns") }))
end

-- GET /bench/first?key=K: one nodes() call on K, timed; "fresh" when it is this worker's first call on K.
local called = {}
function _M.first()
    local key = ngx.var.arg_key
    local fresh = not called[key]
    called[key] = true
    collectgarbage("collect")
    local gc_before = collectgarbage("count")
    local t0 = now_ns()
    local nodes = disc.nodes(key)
    local elapsed = now_ns() - t0
    reply({ worker = ngx.worker.id(), fresh = fresh, ns = elapsed, nodes = nodes and #nodes or 0,
            gc_kib = collectgarbage("count") - gc_before })
end

-- GET /bench/walk: the first nodes() call on every regular key in this worker (what every key costs a worker
-- once after a change), checking every answer. Only the first walk in a worker is "fresh".
function _M.walk()
    local fresh = not walked
    walked = true
    local names = {}
    for i = 1, #keys do
        names[i] = keys[i][1]
    end
    -- ?jit=v or ?jit=dump: LuaJIT's trace log of the walk into the run directory (checks what is traced).
    local jit_log = ngx.var.arg_jit
    if jit_log then
        local path = "/tmp/k8s-disc-bench-jit-" .. jit_log .. ".log"  -- workers may not write the prefix
        if jit_log == "dump" then
            require("jit.dump").on("tbirsmx", path)
        else
            require("jit." .. jit_log).on(path)
        end
    end
    -- ?prof=MODE: LuaJIT's sampling profiler over the walk (e.g. "v": VM states, "Fl": functions and lines).
    local prof = ngx.var.arg_prof
    if prof then
        require("jit.p").start(prof, "/tmp/k8s-disc-bench-prof-" .. prof .. ".txt")
    end
    collectgarbage("collect")
    local gc_before = collectgarbage("count")
    local rss_before = rss_anon_kib()
    if ngx.var.arg_gc == "stop" then
        collectgarbage("stop")  -- to tell the collector's share from the rest
    end
    local t0 = now_ns()
    for i = 1, #names do
        disc.nodes(names[i])
    end
    local elapsed = now_ns() - t0
    collectgarbage("restart")
    if jit_log then
        require("jit." .. jit_log).off()
    end
    if prof then
        require("jit.p").stop()
    end
    local gc_after = collectgarbage("count")
    local bad, nodes_total = 0, 0
    for i = 1, #keys do
        local n = disc.nodes(keys[i][1])
        if not n or #n ~= keys[i][2] then
            bad = bad + 1
        else
            nodes_total = nodes_total + #n
        end
    end
    reply({
        worker = ngx.worker.id(), fresh = fresh, keys = #names, nodes = nodes_total, bad = bad,
        ns = elapsed, gc_kib = gc_after - gc_before, rss_anon_kib_before = rss_before,
        rss_anon_kib_after = rss_anon_kib(),
    })
end

-- GET /bench/alloc_floor: the tables and host strings of a walk, built by plain Lua with no lookup at all: what
-- LuaJIT's allocator and collector alone charge per key. The hosts are made from bytes, as nodes() makes them
-- from its lookup's copy: the driver's hosts.bin (next to keys.json) holds every key's nodes, per node
-- [u16 port LE][u8 host length][host], read before the clock starts. Like the walk, it counts only in a worker
-- that has done neither before ("fresh").
function _M.alloc_floor()
    local fresh = not walked
    walked = true
    local f = assert(io.open(hosts_path, "rb"))
    local text = f:read("*a")
    f:close()
    -- Outside the Lua heap, like the shared memory nodes() copies from: the collector's pacing sees the same heap.
    local size = #text
    local bytes = ffi.gc(ffi.cast("uint8_t *", ffi.C.malloc(size)), ffi.C.free)
    ffi.copy(bytes, text, size)
    text = nil
    local held = {}
    collectgarbage("collect")
    local gc_before = collectgarbage("count")
    if ngx.var.arg_gc == "stop" then
        collectgarbage("stop")
    end
    local t0 = now_ns()
    local p = 0
    for i = 1, #keys do
        local count = keys[i][2]
        local nodes = new_tab(count, 0)
        for j = 1, count do
            local len = bytes[p + 2]
            nodes[j] = { host = ffi.string(bytes + p + 3, len), port = bytes[p] + bytes[p + 1] * 256, weight = 100 }
            p = p + 3 + len
        end
        held[keys[i][1]] = { ver = i, hint = i, nodes = nodes }
    end
    local elapsed = now_ns() - t0
    collectgarbage("restart")
    assert(p == size, "hosts.bin does not match keys.json")
    reply({ worker = ngx.worker.id(), fresh = fresh, keys = #keys, ns = elapsed,
            gc_kib = collectgarbage("count") - gc_before, held = held and 1 })
end

-- GET /bench/lookups?n=N: N nodes() calls cycling over every regular key; this worker's memory before and after.
function _M.lookups()
    local n = tonumber(ngx.var.arg_n) or 1000000
    local names = {}
    for i = 1, #keys do
        names[i] = keys[i][1]
    end
    local rss_before = rss_anon_kib()
    local gc_before = collectgarbage("count")
    local t0 = now_ns()
    local count = #names
    for i = 1, n do
        disc.nodes(names[i % count + 1])
    end
    local elapsed = now_ns() - t0
    reply({
        worker = ngx.worker.id(), calls = n, ns = elapsed, rss_anon_kib_before = rss_before,
        rss_anon_kib_after = rss_anon_kib(), gc_kib_before = gc_before, gc_kib_after = collectgarbage("count"),
    })
end

local function best_of(rounds, calls, fn)
    local best = math.huge
    for _ = 1, rounds do
        local t0 = now_ns()
        fn(calls)
        best = math.min(best, (now_ns() - t0) / calls)
    end
    return best
end

-- GET /bench/micro?key=K: nodes() for an unchanged key and for an unknown key, ns per call, best of 5 rounds.
function _M.micro()
    local key = ngx.var.arg_key
    assert(disc.nodes(key), "no nodes for " .. tostring(key))
    local unchanged = best_of(5, 1000000, function(n)
        for _ = 1, n do
            disc.nodes(key)
        end
    end)
    local unknown = best_of(5, 200000, function(n)
        for _ = 1, n do
            disc.nodes("bench/no-such-service:http")
        end
    end)
    reply({ unchanged_ns = unchanged, unknown_ns = unknown })
end

-- GET /bench/await?key=K&timeout=S: sends "armed" as soon as it holds the key's current nodes, then calls
-- nodes() until they change and reports when (and how long that one call took: the first call after a change).
function _M.await()
    local key = ngx.var.arg_key
    local deadline = now_ns() + (tonumber(ngx.var.arg_timeout) or 5) * 1e9
    local old = disc.nodes(key)
    ngx.say("armed")
    ngx.flush(true)
    local started, spins = now_ns(), 0
    while true do
        spins = spins + 1
        local t0 = now_ns()
        local cur = disc.nodes(key)
        local t1 = now_ns()
        if cur ~= old then
            ngx.say(cjson.encode({ seen_ns = t1, call_ns = t1 - t0, count = cur and #cur or 0, worker = ngx.worker.id(),
                                      spin_ns = (t1 - started) / spins }))
            return
        end
        if t1 > deadline then
            ngx.say(cjson.encode({ timeout = true }))
            return
        end
        ngx.sleep(0)
    end
end

-- GET /bench/status: the dump's status and this worker's pid.
function _M.status()
    local dump = disc.dump()
    reply({ pid = ngx.worker.pid(), status = dump and dump.status })
end

-- GET /bench/metrics: the Prometheus text, as an operator would scrape it.
function _M.metrics()
    ngx.header.content_type = "text/plain"
    ngx.print(disc.metrics())
end

-- balancer_by_lua: round robin over `nodes`.
local set_current_peer = require("ngx.balancer").set_current_peer
local rr = 0
local function pick(nodes)
    if not nodes then
        return ngx.exit(502)
    end
    rr = rr % #nodes + 1
    local node = nodes[rr]
    local ok, err = set_current_peer(node.host, node.port)
    if not ok then
        ngx.log(ngx.ERR, "set_current_peer: ", err)
        return ngx.exit(502)
    end
end

-- Over the discovered nodes of `key`.
function _M.balance(key)
    return pick(disc.nodes(key))
end

-- balancer_by_lua over a fixed Lua list of the same nodes: what balancing in Lua costs without discovery.
local fixed = {}
function _M.balance_fixed(port)
    if not fixed[1] then
        for i = 1, 4 do
            fixed[i] = { host = "127.0.0." .. i, port = tonumber(port), weight = 100 }
        end
    end
    return pick(fixed)
end

return _M
