-- Kubernetes service discovery for OpenResty: a thin LuaJIT FFI layer over libk8s_disc.so.
--
-- Phases:
--   init_by_lua:      k8s_disc.init(conf)   validates the config and maps the shared memory (in the master)
--   init_worker_by_lua: k8s_disc.init_worker()  starts the watcher in exactly one process
--   any phase after:  k8s_disc.nodes("ns/name:port"), k8s_disc.dump(), k8s_disc.ready()
--
-- nodes() returns the same table while a service's nodes are unchanged and a new table when they change; a table
-- once returned is never modified, so callers may keep, sort or extend it. A node table ({host, port, weight}) is
-- shared by successive answers while that endpoint is unchanged: treat node tables as read-only. With a cluster's
-- topology mode on, each node also has a `priority` (0: preferred, -1: used when no node of priority 0 is left).

local ffi = require("ffi")
local native = require("resty.k8s_disc.native")
local decode = require("resty.k8s_disc.decode")
local cjson = require("cjson.safe").new()
-- Keep empty JSON arrays as arrays when the dump is re-encoded (OpenResty's cjson; a no-op elsewhere).
if cjson.decode_array_with_array_mt then
    cjson.decode_array_with_array_mt(true)
end

local type, tonumber, error, ipairs = type, tonumber, error, ipairs
local ffi_string, ffi_new = ffi.string, ffi.new
local ngx_log, ERR, INFO = ngx.log, ngx.ERR, ngx.INFO
local UNCHANGED, NOT_FOUND, E_BUFFER, E_BUSY, E_CORRUPT =
    native.UNCHANGED, native.NOT_FOUND, native.E_BUFFER, native.E_BUSY, native.E_CORRUPT

local _M = { _VERSION = "0.1.0" }

-- Everything this module keeps, in one place.
local S = {
    lib = nil,              -- the loaded library
    lib_path = nil,         -- where it was found
    handle = nil,           -- k8s_disc_t* from init (inherited by workers through fork)
    multi = false,          -- multi-cluster names ("id/ns/name:port")
    weights = {},           -- cluster id ("" in single mode) -> default_weight
    watcher_mode = "auto",
    agent_enabled = false,  -- the privileged agent was enabled at init
    explicit_log_level = false,
    -- Per worker, for nodes(): service name -> { ver, hint, nodes, own = private list or nil, spare = the one
    -- before }, and the buffer lookups are copied into (grown when an entry does not fit).
    cache = {},
    buf_size = 64 * 1024,
    buf = ffi_new("uint8_t[?]", 64 * 1024),
}
-- In/out arguments of k8s_disc_nodes(), reused by every call.
local version_box = ffi_new("uint64_t[1]")
local hint_box = ffi_new("uint64_t[1]")
local len_box = ffi_new("size_t[1]")

-- A JSON document of `fn(handle, out, cap)`, decoded.
local function read_json(fn)
    local text, err = native.read_document(function(out, cap) return fn(S.handle, out, cap) end)
    if not text then
        return nil, err
    end
    return cjson.decode(text)
end

local LOG_LEVELS = { error = 1, warn = 2, notice = 3, info = 4, debug = 5 }
local WATCHER_MODES = { auto = true, agent = true, worker = true }

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
    local mode = opts.watcher or "auto"
    if not WATCHER_MODES[mode] then
        error("k8s-disc: invalid watcher option " .. tostring(mode) .. " (expected auto, agent or worker)", 2)
    end
    local level = opts.log_level and LOG_LEVELS[opts.log_level]
    if opts.log_level and not level then
        error("k8s-disc: invalid log_level " .. tostring(opts.log_level), 2)
    end
    if not S.lib then
        S.lib, S.lib_path = native.load(opts.library, _M._VERSION)
    end
    local lib = S.lib
    local json, err = cjson.encode(conf)
    if not json then
        error("k8s-disc: cannot encode the discovery config: " .. err, 2)
    end
    -- The subsystem tells the library which Lua VM calls: http and stream initialised with the same config share
    -- one instance (one watcher, one region).
    local scope = cjson.encode({ subsystem = ngx.config.subsystem or "http", watcher = mode })
    local out = ffi_new("const k8s_disc_t *[1]")
    local errbuf = ffi_new("char[?]", 2048)
    local rc = tonumber(lib.k8s_disc_init(json, #json, scope, #scope, out, errbuf, 2048))
    if rc ~= 0 then
        error("k8s-disc: " .. ffi_string(errbuf), 2)
    end
    -- The handle holds a reference to the library's instance until this Lua VM closes (after a reload, the
    -- master's previous VM), so the configuration stays valid as long as nginx may fork workers from it.
    S.handle = ffi.gc(out[0], lib.k8s_disc_release)
    S.watcher_mode = mode
    local info = assert(read_json(lib.k8s_disc_info))
    S.multi = info.multi
    S.weights = {}
    for _, c in ipairs(info.clusters) do
        S.weights[c.id] = c.default_weight
    end
    if level then
        lib.k8s_disc_set_log_level(level)
        S.explicit_log_level = true
    end
    S.agent_enabled = false
    if mode ~= "worker" and ptype == "master" then
        local enabled, perr = process.enable_privileged_agent()
        S.agent_enabled = enabled and true or false
        if not enabled and mode == "agent" then
            error("k8s-disc: watcher = agent but no privileged agent: " .. tostring(perr), 2)
        end
    end
    S.cache = {}
    return true
end

-- Whether the calling process is the one that runs the watcher: the privileged agent (when there is one and
-- the mode allows it), else worker 0, or the only process with master_process off.
local function is_watcher_process()
    local ok, process = pcall(require, "ngx.process")
    local ptype = ok and process.type() or (ngx.worker.id() and "worker" or "single")
    if ptype == "single" then
        return true
    end
    if ptype == "privileged agent" then
        return S.watcher_mode ~= "worker"
    end
    if ptype ~= "worker" or S.watcher_mode == "agent" or (S.watcher_mode == "auto" and S.agent_enabled) then
        return false
    end
    return ngx.worker.id() == 0
end

-- Starts the watcher if this process is the watcher process. Call in init_worker_by_lua.
function _M.init_worker()
    if not S.handle then
        error("k8s-disc: init_worker() called before init(): call init(conf) in init_by_lua "
              .. "(the shared memory must exist before nginx forks its workers)", 2)
    end
    if not is_watcher_process() then
        return false
    end
    if not S.explicit_log_level then
        -- Follow nginx's error_log level, so the watcher is as quiet as the rest of the log.
        local ok, errlog = pcall(require, "ngx.errlog")
        local level = ok and errlog.get_sys_filter_level()
        if level then
            S.lib.k8s_disc_set_log_level(level <= 4 and 1 or math.min(level - 3, 5))
        end
    end
    local errbuf = ffi_new("char[?]", 1024)
    local rc = tonumber(S.lib.k8s_disc_start(S.handle, errbuf, 1024))
    if rc < 0 then
        ngx_log(ERR, "k8s-disc: cannot start the watcher: ", ffi_string(errbuf))
        return nil, ffi_string(errbuf)
    end
    if rc == 0 then
        ngx_log(INFO, "k8s-disc: watcher started in this process (", S.lib_path, ")")
    end
    return true
end

local function weight_of(name)
    if not S.multi then
        return S.weights[""]
    end
    local id = name:match("^([^/]+)/")
    return id and S.weights[id]
end

-- The nodes of "ns/name:port" ("id/ns/name:port" in multi-cluster mode) as an array of {host, port, weight},
-- or nil (plus a reason) when the service or port is unknown.
function _M.nodes(name)
    local handle = S.handle
    if not handle then
        return nil, "k8s-disc: not initialised"
    end
    if type(name) ~= "string" then
        return nil, "k8s-disc: service name must be a string"
    end
    local cache = S.cache
    local entry = cache[name]
    for _ = 1, 3 do
        if entry then
            version_box[0] = entry.ver
            hint_box[0] = entry.hint
        else
            version_box[0] = 0
            hint_box[0] = 0
        end
        len_box[0] = S.buf_size
        local rc = S.lib.k8s_disc_nodes(handle, name, #name, version_box, hint_box, S.buf, len_box)
        if rc == UNCHANGED then
            return entry.nodes
        end
        if rc >= 0 then
            -- The private list before the previous one is free again: it is refilled rather than a new one made.
            local prev, spare = entry and entry.own, entry and entry.spare
            local nodes, own = decode.nodes(S.buf, rc, weight_of(name), prev, spare)
            -- Plain numbers, not boxed uint64 cdata: versions and hints stay far below 2^53, and numbers cost no
            -- allocation.
            local ver, hint = tonumber(version_box[0]), tonumber(hint_box[0])
            if own then
                cache[name] = { ver = ver, hint = hint, nodes = nodes, own = own, spare = prev }
            else
                -- Only the fields in use: an entry per service name, so its size is what a first walk allocates.
                cache[name] = { ver = ver, hint = hint, nodes = nodes }
            end
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
            S.buf_size = tonumber(len_box[0])
            S.buf = ffi_new("uint8_t[?]", S.buf_size)
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
    if not S.handle then
        return nil, "k8s-disc: not initialised"
    end
    return read_json(S.lib.k8s_disc_dump)
end

-- What this gateway sees for one service name ("[id/]ns/name:port"): {service, found, cluster, nodes, version,
-- changed_at} or {service, found = false, reason, ports?}. For debugging "no valid upstream node".
function _M.lookup(name)
    if not S.handle then
        return nil, "k8s-disc: not initialised"
    end
    if type(name) ~= "string" then
        return nil, "k8s-disc: service name must be a string"
    end
    return read_json(function(h, out, cap) return S.lib.k8s_disc_lookup(h, name, #name, out, cap) end)
end

-- Prometheus text-format metrics of every cluster (the same figures in every worker): mount it on a location,
-- e.g. content_by_lua_block { ngx.print(require("resty.k8s_disc").metrics()) }.
function _M.metrics()
    if not S.handle then
        return nil, "k8s-disc: not initialised"
    end
    return native.read_document(function(out, cap) return S.lib.k8s_disc_metrics(S.handle, out, cap) end)
end

-- The configuration reference of the library: every key of the discovery config with its default (a JSON value,
-- or cjson.null), as {name, default, default_note, doc, apisix} rows. Loads the library if init() has not (from
-- `library`, else package.cpath).
function _M.config_fields(library)
    if not S.lib then
        S.lib, S.lib_path = native.load(library, _M._VERSION)
    end
    local text, err = native.read_document(function(out, cap) return S.lib.k8s_disc_config_fields(out, cap) end)
    if not text then
        return nil, err
    end
    return cjson.decode(text)
end

-- True once every cluster has completed its first full list.
function _M.ready()
    return S.handle ~= nil and tonumber(S.lib.k8s_disc_ready(S.handle)) == 1
end

function _M.initialised() return S.handle ~= nil end

-- Logged once at load so operators can see which library a worker uses.
function _M.library_path()
    return S.lib_path
end

return _M
