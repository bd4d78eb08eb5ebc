-- APISIX discovery module "kubernetes", backed by libk8s_disc.so.
--
-- Drop-in for APISIX's built-in module: put this project's lua/ first on apisix.extra_lua_path and the .so's
-- directory on apisix.extra_lua_cpath; config.yaml stays as it is.
--
-- APISIX requires discovery modules from init_by_lua (in the master, before fork), so this file initialises when it
-- is first required: the config is validated and the shared memory mapped there. APISIX then calls init_worker()
-- in every worker and in the privileged agent, where the watcher runs.

local k8s_disc = require("resty.k8s_disc")
local api = require("apisix.discovery.kubernetes.api")
local ngx_process = require("ngx.process")

local local_conf = require("apisix.core.config_local").local_conf()
local discovery_conf = local_conf and local_conf.discovery and local_conf.discovery.kubernetes

local _M = { version = k8s_disc._VERSION }

local init_error
if not discovery_conf then
    init_error = "discovery.kubernetes is not set in config.yaml"
elseif ngx_process.type() ~= "master" and ngx_process.type() ~= "single" then
    -- Required after fork: the shared memory would be private to this process and nothing would be served.
    init_error = "apisix.discovery.kubernetes was first loaded in a " .. ngx_process.type()
                 .. " process; it must be required in init_by_lua (APISIX does this for configured discovery)"
else
    -- An invalid config raises here, so nginx refuses to start with the message.
    k8s_disc.init(discovery_conf, { watcher = "auto" })
end

function _M.init_worker()
    if init_error then
        error("k8s-disc: " .. init_error, 2)
    end
    k8s_disc.init_worker()
end

-- service_name: "ns/name:port" (single cluster) or "id/ns/name:port" (multi cluster).
function _M.nodes(service_name)
    return k8s_disc.nodes(service_name)
end

-- APISIX's dump shape: {config, endpoints = [{id?, endpoints = [{name, value}]}]}, tokens masked; plus a
-- per-cluster "status" list (readiness, last error, shared-memory use).
function _M.dump_data()
    local dump, err = k8s_disc.dump()
    if not dump then
        return { error = err }
    end
    return dump
end

-- Control API routes (APISIX serves them on its control port, 127.0.0.1:9090 by default), beside the dump that
-- APISIX registers for dump_data():
--   GET /v1/discovery/kubernetes/lookup?service=[id/]ns/name:port   what this gateway sees for one name, or why not
--   GET /v1/discovery/kubernetes/metrics                             Prometheus text-format metrics
function _M.control_api()
    return {
        { methods = { "GET" }, uris = { "/v1/discovery/kubernetes/lookup" }, handler = api.lookup },
        { methods = { "GET" }, uris = { "/v1/discovery/kubernetes/metrics" }, handler = api.metrics },
    }
end

function _M.check_discovery_ready()
    if k8s_disc.ready() then
        return true
    end
    return false, "kubernetes discovery not ready"
end

return _M
