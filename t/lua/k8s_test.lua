-- Helpers for test locations: waiting for discovery, and changing objects in the fake API server the way
-- kubectl would (create, replace, delete).

local cjson = require "cjson.safe"
local fake = require "fake_api"
local k8s_disc = require "resty.k8s_disc"

local _M = {}

-- Polls fn() every 10 ms until it returns a truthy value or `timeout` seconds pass; returns fn's value and the
-- elapsed seconds.
function _M.wait_until(fn, timeout)
    local start = ngx.now()
    local deadline = start + (timeout or 5)
    repeat
        local v = fn()
        if v then
            ngx.update_time()
            return v, ngx.now() - start
        end
        ngx.sleep(0.01)
        ngx.update_time()
    until ngx.now() > deadline
    return nil, ngx.now() - start
end

function _M.wait_ready(timeout)
    return _M.wait_until(function() return k8s_disc.ready() end, timeout)
end

-- Number of nodes of a service name, 0 when unknown (nil) so that results print compactly.
function _M.count(name, nodes_fn)
    local nodes = (nodes_fn or k8s_disc.nodes)(name)
    return nodes and #nodes or 0
end

local PATHS = {
    Endpoints = "/api/v1/namespaces/%s/endpoints",
    EndpointSlice = "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices",
}

-- Creates or replaces an object (table with kind and metadata.namespace/name).
function _M.apply(port, obj)
    local base = PATHS[obj.kind]:format(obj.metadata.namespace)
    local body = cjson.encode(obj)
    local status, resp = fake.request(port, "PUT", base .. "/" .. obj.metadata.name, body)
    if status == 404 then
        status, resp = fake.request(port, "POST", base, body)
    end
    if status ~= 200 and status ~= 201 then
        error("apply " .. obj.kind .. " " .. obj.metadata.name .. ": " .. tostring(status) .. " " .. tostring(resp))
    end
    return status
end

function _M.delete(port, kind, ns, name)
    local status, resp = fake.request(port, "DELETE", PATHS[kind]:format(ns) .. "/" .. name)
    if status ~= 200 then
        error("delete " .. kind .. " " .. name .. ": " .. tostring(status) .. " " .. tostring(resp))
    end
end

-- An Endpoints object with one subset: ips x ports ({name=, port=} each).
function _M.endpoints(ns, name, ips, ports, labels)
    local addresses = {}
    for i, ip in ipairs(ips) do
        addresses[i] = { ip = ip }
    end
    local subset = { ports = ports }
    if #addresses > 0 then
        subset.addresses = addresses
    end
    return {
        kind = "Endpoints", apiVersion = "v1",
        metadata = { namespace = ns, name = name, labels = labels },
        subsets = { subset },
    }
end

-- Compares two decoded JSON values; returns true, or false and the path of the first difference.
function _M.same(a, b, path)
    path = path or "$"
    if type(a) ~= type(b) then
        return false, path .. ": " .. type(a) .. " vs " .. type(b)
    end
    if type(a) ~= "table" then
        if a == b then return true end
        return false, path .. ": " .. tostring(a) .. " vs " .. tostring(b)
    end
    for k, v in pairs(a) do
        local ok, where = _M.same(v, b[k], path .. "." .. tostring(k))
        if not ok then return false, where end
    end
    for k in pairs(b) do
        if a[k] == nil then return false, path .. "." .. tostring(k) .. ": missing" end
    end
    return true
end

-- Space-separated node counts of several service names, polled until they equal `expect` (same format) or
-- `timeout` seconds pass; the last counts are returned either way.
function _M.counts(names, expect, timeout, nodes_fn)
    local line
    _M.wait_until(function()
        local out = {}
        for i, name in ipairs(names) do
            out[i] = _M.count(name, nodes_fn)
        end
        line = table.concat(out, " ")
        return expect == nil or line == expect
    end, timeout or 5)
    return line
end

return _M
