-- Node tables from the buffer k8s_disc_nodes() fills: `count` x [u16 port LE][u8 host_len][host], sorted by host
-- then port. With a cluster's topology mode on, host_len has its high bit set and the host is followed by
-- [i8 priority][u8 zone_len][zone]: such a node is {host, port, weight, priority} (the zone is for the lookup API
-- and the dump).

local ffi = require("ffi")

local ffi_string, C = ffi.string, ffi.C
-- Another module may have declared it already.
pcall(ffi.cdef, "int memcmp(const void *a, const void *b, size_t n);")

local ok_new_tab, new_tab = pcall(require, "table.new")
if not ok_new_tab then
    new_tab = function() return {} end
end
local ok_clear, clear_tab = pcall(require, "table.clear")
if not ok_clear then
    clear_tab = function(t)
        for k in pairs(t) do
            t[k] = nil
        end
    end
end

local _M = {}

-- Services with at least this many nodes keep a private list of their node tables, so that after a change the
-- nodes that stayed are reused instead of rebuilt (allocation, and the GC work it brings, is what a change costs).
local REUSE_MIN_NODES = 32

-- The node at offset p: host length, the priority (nil without topology) and the next node's offset.
local function node_extent(buf, p)
    local host_len = buf[p + 2]
    if host_len < 128 then
        return host_len, nil, p + 3 + host_len
    end
    host_len = host_len - 128
    local at = p + 3 + host_len
    local priority = buf[at]
    if priority >= 128 then
        priority = priority - 256
    end
    return host_len, priority, at + 2 + buf[at + 1]
end

-- A node table; one without topology has exactly the three fields (no `priority` key at all).
local function new_node(host, port, weight, priority)
    if priority then
        return { host = host, port = port, weight = weight, priority = priority }
    end
    return { host = host, port = port, weight = weight }
end

-- Returns the answer (a new array of {host, port, weight[, priority]}) and, for large services, its private list.
-- `prev` is the previous answer's private list (or nil): nodes equal to one of its tables reuse that table.
-- `spare` (or nil) is a private list no longer in use, refilled as the new one instead of allocating another.
function _M.nodes(buf, count, weight, prev, spare)
    local nodes = new_tab(count, 0)
    local p = 0
    if not prev then
        for i = 1, count do
            local host_len, priority, next_p = node_extent(buf, p)
            nodes[i] = new_node(ffi_string(buf + p + 3, host_len), buf[p] + buf[p + 1] * 256, weight, priority)
            p = next_p
        end
    else
        -- A merge of two sorted lists. An unchanged node is recognised from the buffer's bytes, without making
        -- its host string; only a node that differs is decoded and placed by comparing strings.
        local j, old = 1, prev[1]
        for i = 1, count do
            local host_len, priority, next_p = node_extent(buf, p)
            local port = buf[p] + buf[p + 1] * 256
            local host_at = buf + p + 3
            local reuse = false
            while old do
                local old_host = old.host
                if #old_host == host_len and old.port == port and C.memcmp(host_at, old_host, host_len) == 0 then
                    reuse = old.weight == weight and old.priority == priority
                    j = j + 1
                    old = prev[j]
                    break
                end
                local host = ffi_string(host_at, host_len)
                if old_host > host or (old_host == host and old.port > port) then
                    break
                end
                j = j + 1
                old = prev[j]
            end
            nodes[i] = reuse and prev[j - 1] or new_node(ffi_string(host_at, host_len), port, weight, priority)
            p = next_p
        end
    end
    if count < REUSE_MIN_NODES then
        return nodes, nil
    end
    -- Private: callers may sort the answer in place or replace its elements (APISIX does both).
    local own = spare
    if own then
        clear_tab(own)
    else
        own = new_tab(count, 0)
    end
    for i = 1, count do
        own[i] = nodes[i]
    end
    return nodes, own
end

return _M
