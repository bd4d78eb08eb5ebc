-- Benchmark-only APISIX plugin: exposes benches/lua/k8s_disc_bench.lua's handlers on APISIX's control API
-- (GET /bench/walk, /bench/sync, /bench/micro, /bench/await), measuring whichever `kubernetes` discovery module
-- APISIX loaded: this project's (its lua/ first on extra_lua_path) or APISIX's built-in one. The same code times
-- both. Loaded from benches/lua through extra_lua_path by benches/apisix_side_by_side.py; not for production.
--
-- plugin_attr.k8s-disc-bench in config.yaml:
--   keys    the driver's keys.json ([[name, node count], ...])
--   module  "ours" or "builtin": how readiness is read (the built-in module's check_discovery_ready() logs a
--           warning on every call before its first list, which a 1 ms poll would turn into a flood)

local core = require("apisix.core")
local process = require("ngx.process")
local bench = require("k8s_disc_bench")

local plugin_name = "k8s-disc-bench"

local _M = {
    version = 0.1,
    priority = 0,
    name = plugin_name,
    schema = { type = "object" },
}

function _M.check_schema(conf)
    return core.schema.check(_M.schema, conf)
end

-- APISIX calls init() when it loads the plugins in each process, after the discovery modules' init_worker(), so
-- `nodes` is the function the module settled on (the built-in one picks it in init_worker).
function _M.init()
    if process.type() ~= "worker" then
        return
    end
    local attr = assert(core.config.local_conf().plugin_attr[plugin_name], "plugin_attr." .. plugin_name)
    local mod = require("apisix.discovery.kubernetes")
    local ready
    if attr.module == "builtin" then
        local dict = ngx.shared.kubernetes
        ready = function()
            return dict:get("discovery_ready")  -- what the module's check_ready() reads, set after a full list
        end
    else
        ready = function()
            return (mod.check_discovery_ready())
        end
    end
    bench.init_worker(attr.keys, { nodes = mod.nodes, ready = ready })
end

local function route(name)
    return {
        methods = { "GET" },
        uris = { "/bench/" .. name },
        handler = function()
            bench[name]()  -- answers by itself (ngx.say), so the control API adds nothing
        end,
    }
end

function _M.control_api()
    return { route("walk"), route("sync"), route("micro"), route("await"), route("alloc_floor") }
end

return _M
