-- HTTP handlers in APISIX's API handler form (they return a status and a body), shared by the discovery adapter's
-- control API and the k8s-disc-metrics plugin. Requiring this module does not initialise discovery, so the plugin
-- can serve metrics without loading the adapter.

local k8s_disc = require("resty.k8s_disc")

local _M = {}

-- GET ?service=[id/]ns/name:port: what a lookup of that name finds, and why when it finds nothing.
function _M.lookup()
    local name = ngx.req.get_uri_args().service
    if type(name) ~= "string" or name == "" then
        return 400, { error_msg = "missing query argument: service=[id/]ns/name:port" }
    end
    local found, err = k8s_disc.lookup(name)
    if not found then
        return 503, { error_msg = err }
    end
    return found.found and 200 or 404, found
end

-- GET: Prometheus text-format metrics of every cluster.
function _M.metrics()
    local text, err = k8s_disc.metrics()
    if not text then
        return 503, { error_msg = err }
    end
    ngx.header["Content-Type"] = "text/plain; version=0.0.4"
    return 200, text
end

return _M
