-- Kubernetes service discovery for OpenResty: a thin LuaJIT FFI layer over libk8s_disc.so.
--
-- Phases:
--   init_by_lua:      k8s_disc.init(conf)   validates the config and maps the shared memory (in the master)
--   init_worker_by_lua: k8s_disc.init_worker()  starts the watcher in exactly one process
--   any phase after:  k8s_disc.nodes("ns/name:port"), k8s_disc.dump(), k8s_disc.ready()
--
-- nodes() returns the same table while a service's nodes are unchanged and a new table when they change; a table
-- once returned is never modified, so callers may keep, sort or extend it.

local ffi = require("ffi")
local cjson = require("cjson.safe").new()
-- Keep empty JSON arrays as arrays when the dump is re-encoded (OpenResty's cjson; a no-op elsewhere).
if cjson.decode_array_with_array_mt then
    cjson.decode_array_with_array_mt(true)
end

local C_NULL = nil
local type, tonumber, error, pairs, ipairs = type, tonumber, error, pairs, ipairs
local ffi_string, ffi_new = ffi.string, ffi.new
local ngx_log, ERR, WARN, INFO = ngx.log, ngx.ERR, ngx.WARN, ngx.INFO

local ok_new_tab, new_tab = pcall(require, "table.new")
if not ok_new_tab then
    new_tab = function() return {} end
end

local _M = { _VERSION = "0.1.0" }

ffi.cdef [[
typedef struct k8s_disc_t k8s_disc_t;
const char *k8s_disc_version(void);
int32_t k8s_disc_init(const char *config, size_t config_len, const char *opts, size_t opts_len,
                      const k8s_disc_t **out, char *err, size_t err_cap);
void k8s_disc_release(const k8s_disc_t *h);
int32_t k8s_disc_start(const k8s_disc_t *h, char *err, size_t err_cap);
int32_t k8s_disc_nodes(const k8s_disc_t *h, const char *name, size_t name_len, uint64_t *version,
                       uint64_t *hint, uint8_t *buf, size_t *buf_len);
int32_t k8s_disc_ready(const k8s_disc_t *h);
int64_t k8s_disc_dump(const k8s_disc_t *h, uint8_t *buf, size_t cap);
int64_t k8s_disc_info(const k8s_disc_t *h, uint8_t *buf, size_t cap);
int64_t k8s_disc_lookup(const k8s_disc_t *h, const char *name, size_t name_len, uint8_t *buf, size_t cap);
int64_t k8s_disc_metrics(const k8s_disc_t *h, uint8_t *buf, size_t cap);
int64_t k8s_disc_config_fields(uint8_t *buf, size_t cap);
int32_t k8s_disc_set_log_level(int32_t level);
]]

-- Return codes shared with include/k8s_disc.h.
local UNCHANGED, NOT_FOUND, E_BUFFER, E_BUSY, E_CORRUPT = -1, -2, -3, -4, -8

local lib            -- the loaded library
local lib_path       -- where it was found
local handle         -- k8s_disc_t* from init (inherited by workers through fork)
local multi = false
local weights = {}   -- cluster id ("" in single mode) -> default_weight
local agent_enabled = false
local watcher_mode = "auto"
local explicit_log_level = false

-- Per-worker state for nodes().
local cache = {}     -- service name -> { ver = number, hint = number, nodes = table }
local version_box = ffi_new("uint64_t[1]")
local hint_box = ffi_new("uint64_t[1]")
local len_box = ffi_new("size_t[1]")
local buf_size = 64 * 1024
local buf = ffi_new("uint8_t[?]", buf_size)

local function major_minor(v)
    return v:match("^(%d+%.%d+)")
end

-- Finds the library on package.cpath (or at an explicit path) and checks that it matches this Lua module.
local function load_library(explicit)
    if lib then
        return lib
    end
    local tried = {}
    local candidates = {}
    if explicit then
        candidates[1] = explicit
    else
        for template in package.cpath:gmatch("[^;]+") do
            for _, name in ipairs({ "libk8s_disc", "k8s_disc" }) do
                candidates[#candidates + 1] = (template:gsub("%?", name))
            end
        end
    end
    for _, path in ipairs(candidates) do
        local f = io.open(path, "rb")
        if f then
            f:close()
            local ok, loaded = pcall(ffi.load, path)
            if not ok then
                error("k8s-disc: cannot load " .. path .. ": " .. tostring(loaded), 0)
            end
            local version = ffi_string(loaded.k8s_disc_version())
            if major_minor(version) ~= major_minor(_M._VERSION) then
                error("k8s-disc: " .. path .. " is version " .. version .. " but the Lua module is "
                      .. _M._VERSION, 0)
            end
            lib, lib_path = loaded, path
            return lib
        end
        tried[#tried + 1] = path
    end
    error("k8s-disc: libk8s_disc.so not found; tried: " .. table.concat(tried, ", ")
          .. " (set lua_package_cpath or opts.library)", 0)
end

-- Reads a document produced by a k8s_disc_* call using the "returns needed length" protocol: `fill(out, cap)`
-- writes it and returns its length.
local function read_document(fill)
    local cap = 64 * 1024
    for _ = 1, 4 do
        local out = ffi_new("uint8_t[?]", cap)
        local n = tonumber(fill(out, cap))
        if n < 0 then
            return nil, "k8s-disc: call failed with code " .. n
        end
        if n <= cap then
            return ffi_string(out, n)
        end
        cap = n
    end
    return nil, "k8s-disc: document kept growing"
end

-- The same for a JSON document of `fn(handle, out, cap)`, decoded.
local function read_json(fn)
    local text, err = read_document(function(out, cap) return fn(handle, out, cap) end)
    if not text then
        return nil, err
    end
    return cjson.decode(text)
end

local LOG_LEVELS = { error = 1, warn = 2, notice = 3, info = 4, debug = 5 }

-- Initialises discovery from the config table (APISIX's discovery.kubernetes shape). Call in init_by_lua.
-- opts.library: explicit path of libk8s_disc.so; opts.watcher: "auto" (privileged agent if available, else
-- worker 0), "agent" or "worker"; opts.log_level: watcher log level (error/warn/notice/info/debug).
-- Raises on an invalid config, so nginx refuses to start with the message.
function _M.init(conf, opts)
    opts = opts or {}
    local has_process, process = pcall(require, "ngx.process")
    local ptype = has_process and process.type()
    if ptype == "worker" or ptype == "privileged agent" then
        -- Shared memory mapped after fork would be private to this process: nothing would reach the others.
        error("k8s-disc: init() must be called in init_by_lua (the master), not in a " .. ptype .. " process", 2)
    end
    if type(conf) ~= "table" then
        error("k8s-disc: invalid discovery config: expected a table, got " .. type(conf), 2)
    end
    watcher_mode = opts.watcher or "auto"
    if watcher_mode ~= "auto" and watcher_mode ~= "agent" and watcher_mode ~= "worker" then
        error("k8s-disc: invalid watcher option " .. tostring(watcher_mode)
              .. " (expected auto, agent or worker)", 2)
    end
    local level
    if opts.log_level then
        level = LOG_LEVELS[opts.log_level]
        if not level then
            error("k8s-disc: invalid log_level " .. tostring(opts.log_level), 2)
        end
    end
    load_library(opts.library)
    local json, err = cjson.encode(conf)
    if not json then
        error("k8s-disc: cannot encode the discovery config: " .. err, 2)
    end
    -- The subsystem tells the library which Lua VM calls: http and stream initialised with the same config share
    -- one instance (one watcher, one region).
    local scope = cjson.encode({ subsystem = ngx.config.subsystem or "http", watcher = watcher_mode })
    local out = ffi_new("const k8s_disc_t *[1]")
    local errbuf = ffi_new("char[?]", 2048)
    local rc = tonumber(lib.k8s_disc_init(json, #json, scope, #scope, out, errbuf, 2048))
    if rc ~= 0 then
        error("k8s-disc: " .. ffi_string(errbuf), 2)
    end
    -- The handle holds a reference to the library's instance until this Lua VM closes (after a reload, the
    -- master's previous VM), so the configuration stays valid as long as nginx may fork workers from it.
    handle = ffi.gc(out[0], lib.k8s_disc_release)
    local info = assert(read_json(lib.k8s_disc_info))
    multi = info.multi
    weights = {}
    for _, c in ipairs(info.clusters) do
        weights[c.id] = c.default_weight
    end
    if level then
        lib.k8s_disc_set_log_level(level)
        explicit_log_level = true
    end
    agent_enabled = false
    if watcher_mode ~= "worker" and ptype == "master" then
        local enabled, perr = process.enable_privileged_agent()
        agent_enabled = enabled and true or false
        if not enabled and watcher_mode == "agent" then
            error("k8s-disc: watcher = agent but no privileged agent: " .. tostring(perr), 2)
        end
    end
    cache = {}
    return true
end

-- Whether the calling process is the one that runs the watcher: the privileged agent (when there is one and
-- the mode allows it), else worker 0, or the only process with master_process off.
local function is_watcher_process()
    local ok, process = pcall(require, "ngx.process")
    local ptype
    if ok then
        ptype = process.type()
    else
        ptype = ngx.worker.id() and "worker" or "single"
    end
    if ptype == "single" then
        return true
    end
    if ptype == "privileged agent" then
        return watcher_mode ~= "worker"
    end
    if ptype ~= "worker" or watcher_mode == "agent" then
        return false
    end
    if watcher_mode == "auto" and agent_enabled then
        return false
    end
    return ngx.worker.id() == 0
end

-- Starts the watcher if this process is the watcher process. Call in init_worker_by_lua.
function _M.init_worker()
    if not handle then
        error("k8s-disc: init_worker() called before init(): call init(conf) in init_by_lua "
              .. "(the shared memory must exist before nginx forks its workers)", 2)
    end
    if not is_watcher_process() then
        return false
    end
    if not explicit_log_level then
        -- Follow nginx's error_log level, so the watcher is as quiet as the rest of the log.
        local ok, errlog = pcall(require, "ngx.errlog")
        local level = ok and errlog.get_sys_filter_level()
        if level then
            lib.k8s_disc_set_log_level(level <= 4 and 1 or math.min(level - 3, 5))
        end
    end
    local errbuf = ffi_new("char[?]", 1024)
    local rc = tonumber(lib.k8s_disc_start(handle, errbuf, 1024))
    if rc < 0 then
        ngx_log(ERR, "k8s-disc: cannot start the watcher: ", ffi_string(errbuf))
        return nil, ffi_string(errbuf)
    end
    if rc == 0 then
        ngx_log(INFO, "k8s-disc: watcher started in this process (", lib_path, ")")
    end
    return true
end

local function weight_of(name)
    if not multi then
        return weights[""]
    end
    local id = name:match("^([^/]+)/")
    return id and weights[id]
end

-- Builds the node tables from the lookup buffer: `count` x [u16 port LE][u8 host_len][host].
local function decode_nodes(count, weight)
    local nodes = new_tab(count, 0)
    local p = 0
    for i = 1, count do
        local host_len = buf[p + 2]
        nodes[i] = {
            host = ffi_string(buf + p + 3, host_len),
            port = buf[p] + buf[p + 1] * 256,
            weight = weight,
        }
        p = p + 3 + host_len
    end
    return nodes
end

-- The nodes of "ns/name:port" ("id/ns/name:port" in multi-cluster mode) as an array of {host, port, weight},
-- or nil (plus a reason) when the service or port is unknown.
function _M.nodes(name)
    if not handle then
        return nil, "k8s-disc: not initialised"
    end
    if type(name) ~= "string" then
        return nil, "k8s-disc: service name must be a string"
    end
    local entry = cache[name]
    for _ = 1, 3 do
        if entry then
            version_box[0] = entry.ver
            hint_box[0] = entry.hint
        else
            version_box[0] = 0
            hint_box[0] = 0
        end
        len_box[0] = buf_size
        local rc = lib.k8s_disc_nodes(handle, name, #name, version_box, hint_box, buf, len_box)
        if rc == UNCHANGED then
            return entry.nodes
        end
        if rc >= 0 then
            local nodes = decode_nodes(rc, weight_of(name))
            -- Plain numbers, not boxed uint64 cdata: versions and hints stay far below 2^53, and numbers cost no
            -- allocation.
            cache[name] = { ver = tonumber(version_box[0]), hint = tonumber(hint_box[0]), nodes = nodes }
            return nodes
        end
        if rc == NOT_FOUND then
            cache[name] = nil
            return nil, "service not found"
        end
        if rc == E_CORRUPT then
            -- Never decoded: serve what this worker last saw, if anything, until the watcher rewrites the entry.
            if entry then
                return entry.nodes
            end
            return nil, "k8s-disc: corrupt entry in shared memory"
        end
        if rc == E_BUFFER then
            buf_size = tonumber(len_box[0])
            buf = ffi_new("uint8_t[?]", buf_size)
        elseif rc ~= E_BUSY then
            return nil, "k8s-disc: lookup failed with code " .. rc
        end
    end
    -- The watcher kept rewriting this entry: serve what this worker last saw rather than nothing.
    if entry then
        return entry.nodes
    end
    return nil, "k8s-disc: entry busy"
end

-- Everything discovery currently serves: {config, endpoints = [{id?, endpoints = [{name, value}]}], status}.
function _M.dump()
    if not handle then
        return nil, "k8s-disc: not initialised"
    end
    return read_json(lib.k8s_disc_dump)
end

-- What this gateway sees for one service name ("[id/]ns/name:port"): {service, found, cluster, nodes, version,
-- changed_at} or {service, found = false, reason, ports?}. For debugging "no valid upstream node".
function _M.lookup(name)
    if not handle then
        return nil, "k8s-disc: not initialised"
    end
    if type(name) ~= "string" then
        return nil, "k8s-disc: service name must be a string"
    end
    local text, err = read_document(function(out, cap)
        return lib.k8s_disc_lookup(handle, name, #name, out, cap)
    end)
    if not text then
        return nil, err
    end
    return cjson.decode(text)
end

-- Prometheus text-format metrics of every cluster (the same figures in every worker): mount it on a location,
-- e.g. content_by_lua_block { ngx.print(require("resty.k8s_disc").metrics()) }.
function _M.metrics()
    if not handle then
        return nil, "k8s-disc: not initialised"
    end
    return read_document(function(out, cap) return lib.k8s_disc_metrics(handle, out, cap) end)
end

-- The configuration reference of the library: every key of the discovery config with its default (a JSON value,
-- or cjson.null), as {name, default, default_note, doc, apisix} rows. Loads the library if init() has not (from
-- `library`, else package.cpath).
function _M.config_fields(library)
    load_library(library)
    local text, err = read_document(function(out, cap) return lib.k8s_disc_config_fields(out, cap) end)
    if not text then
        return nil, err
    end
    return cjson.decode(text)
end

-- True once every cluster has completed its first full list.
function _M.ready()
    return handle ~= C_NULL and tonumber(lib.k8s_disc_ready(handle)) == 1
end

function _M.initialised()
    return handle ~= nil
end

-- Logged once at load so operators can see which library a worker uses.
function _M.library_path()
    return lib_path
end

local _ = WARN, pairs
return _M
