-- Writes to a real kube-apiserver from test locations (t/050-real-apiserver.t): server-side apply and delete
-- over TLS with the administrator token. The writer does not verify the server's certificate (discovery, the
-- code under test, does).
--
--   local api = require "real_api"
--   local status, body = api.request("PATCH", path, json_string)
--
-- Reads $TEST_NGINX_REAL_PORT and $TEST_NGINX_REAL_TOKEN through os.getenv (nginx passes them with `env`).

local cjson = require "cjson.safe"

local _M = {}

-- request(method, path [, body]) -> status, body | nil, err. HTTP/1.0, so the answer is never chunked.
function _M.request(method, path, body)
    local port = tonumber(os.getenv("TEST_NGINX_REAL_PORT"))
    local token = os.getenv("TEST_NGINX_REAL_TOKEN")
    local sock = ngx.socket.tcp()
    sock:settimeout(10000)
    local ok, err = sock:connect("127.0.0.1", port)
    if not ok then
        return nil, "connect: " .. err
    end
    ok, err = sock:sslhandshake(nil, nil, false)
    if not ok then
        return nil, "TLS: " .. err
    end
    local ctype = method == "PATCH" and "application/apply-patch+yaml" or "application/json"
    local req = method .. " " .. path .. " HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " .. token
        .. "\r\nAccept: application/json\r\n"
    if body then
        req = req .. "Content-Type: " .. ctype .. "\r\nContent-Length: " .. #body .. "\r\n"
    end
    ok, err = sock:send(req .. "\r\n" .. (body or ""))
    if not ok then
        return nil, "send: " .. err
    end
    local all
    all, err = sock:receive("*a")
    sock:close()
    if not all then
        return nil, "receive: " .. err
    end
    local status = tonumber(all:match("^HTTP/1%.%d (%d%d%d)"))
    return status, all:match("\r\n\r\n(.*)$")
end

-- Creates or updates Endpoints ns/name with `ips` on port http 80 and `labels`; raises unless accepted.
function _M.apply_endpoints(ns, name, ips, labels)
    local addrs = {}
    for i, ip in ipairs(ips) do
        addrs[i] = { ip = ip }
    end
    local obj = {
        apiVersion = "v1", kind = "Endpoints",
        metadata = { namespace = ns, name = name, labels = labels or nil },
        subsets = { { addresses = addrs, ports = { { name = "http", port = 80, protocol = "TCP" } } } },
    }
    local path = "/api/v1/namespaces/" .. ns .. "/endpoints/" .. name .. "?fieldManager=k8s-disc-t&force=true"
    local status, body = _M.request("PATCH", path, cjson.encode(obj))
    if status ~= 200 and status ~= 201 then
        error("apply " .. ns .. "/" .. name .. ": " .. tostring(status) .. " " .. tostring(body))
    end
end

function _M.delete_endpoints(ns, name)
    local status, body = _M.request("DELETE", "/api/v1/namespaces/" .. ns .. "/endpoints/" .. name)
    if status ~= 200 then
        error("delete " .. ns .. "/" .. name .. ": " .. tostring(status) .. " " .. tostring(body))
    end
end

return _M
