-- APISIX plugin "k8s-disc-metrics": serves k8s-disc's Prometheus metrics as one of APISIX's public APIs, on the
-- gateway's own port, for Prometheus setups that cannot reach the control API (127.0.0.1:9090 by default, where
-- the discovery adapter already serves the same text at /v1/discovery/kubernetes/metrics). APISIX's prometheus
-- plugin renders only the series of its own registry, so these are a second scrape target either way.
--
-- config.yaml: add `k8s-disc-metrics` and `public-api` to `plugins`, and optionally
--   plugin_attr:
--     k8s-disc-metrics:
--       export_uri: /apisix/k8s-disc/metrics     # the default
-- then create a route on that URI with the public-api plugin (README, "Metrics with APISIX").

local api = require("apisix.discovery.kubernetes.api")

local plugin_name = "k8s-disc-metrics"
local DEFAULT_EXPORT_URI = "/apisix/k8s-disc/metrics"

local schema = {
    type = "object",
    properties = {},
}

local _M = {
    version = 0.1,
    -- No request phase handlers: the priority only orders this plugin among the others and has no effect.
    priority = 398,
    name = plugin_name,
    schema = schema,
}

function _M.check_schema(conf)
    return require("apisix.core").schema.check(schema, conf)
end

-- plugin_attr.k8s-disc-metrics.export_uri from config.yaml, or the default.
local function export_uri()
    local local_conf = require("apisix.core.config_local").local_conf()
    local attr = local_conf and local_conf.plugin_attr and local_conf.plugin_attr[plugin_name]
    local uri = attr and attr.export_uri
    if uri == nil then
        return DEFAULT_EXPORT_URI
    end
    if type(uri) ~= "string" or uri:sub(1, 1) ~= "/" then
        error("k8s-disc: plugin_attr." .. plugin_name .. ".export_uri must be a path starting with /, got "
              .. tostring(uri), 0)
    end
    return uri
end

-- Public APIs: APISIX serves them on a route that carries the public-api plugin.
function _M.api()
    return {
        { methods = { "GET" }, uri = export_uri(), handler = api.metrics },
    }
end

return _M
