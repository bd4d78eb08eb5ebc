-- Helpers for the APISIX-style test files (t/02x-apisix-*.t): node counts through the APISIX adapter, printed
-- one line per cluster, and small object changes in the fake API server.

local cjson = require "cjson.safe"
local fake = require "fake_api"
local t = require "k8s_test"

local _M = {}

local function adapter()
    return require("apisix.discovery.kubernetes")
end

-- The six service names of APISIX's kubernetes2.t per cluster: ns-a/ns-b with named ports, ns-c with unnamed
-- ports addressed by number.
_M.EP_NAMES = {
    "ns-a/ep:p1", "ns-a/ep:p2", "ns-b/ep:p1", "ns-b/ep:p2", "ns-c/ep:5001", "ns-c/ep:5002",
}

-- Waits until check_discovery_ready() says true (every cluster listed once); returns whether it did.
function _M.wait_ready(timeout)
    return t.wait_until(function() return adapter().check_discovery_ready() end, timeout or 5) == true
end

-- Prints "<label>: <counts>" for `names` (each prefixed with "<id>/" when id is non-empty), after polling
-- until the counts equal `expect` or `timeout` passes. Readiness is awaited first, so a 0 means "not served",
-- never "not listed yet".
function _M.say_counts(id, names, expect, timeout)
    _M.wait_ready(timeout)
    local full = {}
    for i, n in ipairs(names) do
        full[i] = (id ~= "" and id .. "/" or "") .. n
    end
    local got = t.counts(full, expect, timeout or 5, adapter().nodes)
    ngx.say(id ~= "" and id or "single", ": ", got)
    return got
end

-- "host:port host:port ..." of one service name (nodes are sorted by host, then port), or "nil".
function _M.hosts(name)
    local nodes = adapter().nodes(name)
    if not nodes then
        return "nil"
    end
    local out = {}
    for i, n in ipairs(nodes) do
        out[i] = n.host .. ":" .. n.port
    end
    return table.concat(out, " ")
end

-- JSON merge patch (a table, or JSON text) of an object in the fake API server; raises on failure.
function _M.merge_patch(port, path, patch)
    if type(patch) == "table" then
        patch = cjson.encode(patch)
    end
    local st, body = fake.request(port, "PATCH", path, patch,
                                  { ["Content-Type"] = "application/merge-patch+json" })
    if st ~= 200 then
        error("PATCH " .. path .. ": " .. tostring(st) .. " " .. tostring(body))
    end
end

-- POST to the fake's admin API (/fake/...); raises unless 2xx; returns the decoded reply.
function _M.admin(port, path, body, method)
    local st, resp = fake.request(port, method or "POST", path, body)
    if not st or st < 200 or st > 299 then
        error((method or "POST") .. " " .. path .. ": " .. tostring(st) .. " " .. tostring(resp))
    end
    return cjson.decode(resp)
end

-- An EndpointSlice of service `svc` in `ns`. eps: list of {addresses = {...}, ready = true|false|nil,
-- no_conditions = bool}; ports: list of {name =, port =}.
function _M.slice(ns, name, svc, eps, ports, address_type)
    local endpoints = {}
    for i, e in ipairs(eps) do
        local ep = { addresses = e.addresses }
        if not e.no_conditions then
            ep.conditions = { ready = e.ready }
            if e.ready == nil then
                ep.conditions = setmetatable({}, cjson.empty_table_mt)
            end
        end
        endpoints[i] = ep
    end
    return {
        kind = "EndpointSlice", apiVersion = "discovery.k8s.io/v1",
        metadata = { namespace = ns, name = name, labels = { ["kubernetes.io/service-name"] = svc } },
        addressType = address_type or "IPv4",
        endpoints = endpoints,
        ports = ports,
    }
end

-- The decoded dump of the adapter, with each endpoints[].endpoints[].value decoded too (APISIX gives a JSON
-- string there). Returns dump, {[id or ""] = {[name] = decoded value}}, and whether every value was a string.
function _M.dump()
    local d = adapter().dump_data()
    local values, all_strings = {}, true
    for _, item in ipairs(d.endpoints or {}) do
        local per = {}
        values[item.id or ""] = per
        for _, e in ipairs(item.endpoints or {}) do
            if type(e.value) ~= "string" then
                all_strings = false
            end
            per[e.name] = cjson.decode(e.value)
        end
    end
    return d, values, all_strings
end

-- The status entry of cluster `id` ("" in single mode) from the dump.
function _M.status(id)
    for _, s in ipairs(adapter().dump_data().status or {}) do
        if (s.id or "") == (id or "") then
            return s
        end
    end
end

return _M
