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

-- "host:port:weight ..." of a nodes() result, or "nil".
function _M.fmt_nodes(nodes)
    if not nodes then
        return "nil"
    end
    local parts = {}
    for i, n in ipairs(nodes) do
        parts[i] = n.host .. ":" .. n.port .. ":" .. tostring(n.weight)
    end
    return table.concat(parts, " ")
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

local function read_file(path)
    local f = io.open(path, "rb")
    if not f then
        return nil
    end
    local data = f:read("*a")
    f:close()
    return data
end
_M.read_file = read_file

local function list_dir(path)
    local names = {}
    local ls = io.popen("ls -1 " .. path .. " 2>/dev/null")
    for name in ls:lines() do
        names[#names + 1] = name
    end
    ls:close()
    return names
end

-- The children of this nginx's master (from /proc): { {pid=, title=, threads={name=count}, regions=n}, ... }
-- sorted by pid. `title` is nginx's process title ("worker process", "privileged agent process", ...).
-- `region_size`, when given, counts the process's shared anonymous mappings of exactly that many bytes: the
-- discovery regions (nginx's own shared zones have other sizes).
function _M.nginx_processes(region_size)
    local master = require("ngx.process").get_master_pid()
    local procs = {}
    for _, entry in ipairs(list_dir("/proc")) do
        local pid = tonumber(entry)
        local stat = pid and read_file("/proc/" .. pid .. "/stat")
        -- The parent pid is the second field after the ")" that ends the command name.
        local ppid = stat and tonumber(stat:match("%) %S+ (%d+)"))
        if ppid == master then
            local cmdline = read_file("/proc/" .. pid .. "/cmdline") or ""
            local p = {
                pid = pid,
                title = cmdline:match("^nginx: ([%w ]-)%s*%z*$") or cmdline,
                threads = {},
            }
            for _, tid in ipairs(list_dir("/proc/" .. pid .. "/task")) do
                local comm = (read_file("/proc/" .. pid .. "/task/" .. tid .. "/comm") or ""):gsub("%s+$", "")
                p.threads[comm] = (p.threads[comm] or 0) + 1
            end
            if region_size then
                p.regions = _M.region_count(pid, region_size)
            end
            procs[#procs + 1] = p
        end
    end
    table.sort(procs, function(a, b) return a.pid < b.pid end)
    return procs, master
end

-- How many shared anonymous mappings of exactly `size` bytes process `pid` has.
function _M.region_count(pid, size)
    local n = 0
    for line in (read_file("/proc/" .. pid .. "/maps") or ""):gmatch("[^\n]+") do
        local from, to, perms = line:match("^(%x+)-(%x+) (%S+)")
        if perms and perms:sub(4, 4) == "s" and line:find("/dev/zero", 1, true)
           and tonumber(to, 16) - tonumber(from, 16) == size then
            n = n + 1
        end
    end
    return n
end

-- A one-line summary of where watcher threads run: "<title>=<threads>" for every process that has one, e.g.
-- "privileged agent process=1"; "none" when no process has one.
function _M.watcher_threads(procs)
    local parts = {}
    for _, p in ipairs(procs) do
        local n = p.threads["k8s-disc"]
        if n then
            parts[#parts + 1] = p.title .. "=" .. n
        end
    end
    return #parts > 0 and table.concat(parts, ", ") or "none"
end

-- Sends nginx -s reload and waits until the old workers stopped accepting (they are gone or shutting down) and
-- new ones run, so that the next request reaches a new worker. True when that happened within `timeout` seconds.
function _M.reload(timeout)
    local old = {}
    for _, p in ipairs(_M.nginx_processes()) do
        old[p.pid] = true
    end
    if not _M.kill(require("ngx.process").get_master_pid(), 1) then
        return false
    end
    return _M.wait_until(function()
        local new_workers = 0
        for _, p in ipairs(_M.nginx_processes()) do
            if old[p.pid] then
                if not p.title:find("shutting down", 1, true) then
                    return false
                end
            elseif p.title == "worker process" then
                new_workers = new_workers + 1
            end
        end
        return new_workers > 0
    end, timeout or 5) == true
end

-- Whether process `pid` exists (a zombie counts as gone).
function _M.alive(pid)
    local stat = read_file("/proc/" .. pid .. "/stat")
    return stat ~= nil and stat:match("%) (%S+)") ~= "Z"
end

-- Sends signal `sig` (a number) to `pid`.
function _M.kill(pid, sig)
    local ffi = require("ffi")
    pcall(ffi.cdef, "int kill(int pid, int sig);")
    return ffi.C.kill(pid, sig) == 0
end

return _M
