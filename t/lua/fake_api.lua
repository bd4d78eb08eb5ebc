-- Helpers for test locations to talk to the fake Kubernetes API server
-- (t/lib/K8sDiscTest.pm starts one per .t file and puts its port in
-- $TEST_NGINX_FAKE_API_PORT).
--
--   local fake = require "fake_api"
--   local status, body = fake.request(port, "PUT",
--       "/api/v1/namespaces/ns-a/endpoints/ep", json_string_or_table)
--   local stats = fake.stats(port)    -- decoded JSON of GET /fake/stats
--
-- Uses ngx.socket.tcp, so only where cosockets are allowed (content, access,
-- rewrite, timer phases). Errors return nil plus a message.

local cjson = require "cjson.safe"

local tonumber = tonumber
local concat = table.concat

local _M = {}

local TIMEOUT_MS = 5000

-- Read a chunked body: hex size line (extensions ignored), data, CRLF, ...,
-- a zero-size chunk, then optional trailers up to an empty line.
local function read_chunked(sock)
    local parts = {}
    while true do
        local line, err = sock:receive("*l")
        if not line then
            return nil, "reading chunk size: " .. err
        end
        local size = tonumber(line:match("^%s*(%x+)"), 16)
        if not size then
            return nil, "bad chunk size line: " .. line
        end
        if size == 0 then
            repeat
                line, err = sock:receive("*l")
                if not line then
                    return nil, "reading trailers: " .. err
                end
            until line == ""
            return concat(parts)
        end
        local data
        data, err = sock:receive(size)
        if not data then
            return nil, "reading chunk data: " .. err
        end
        parts[#parts + 1] = data
        local crlf
        crlf, err = sock:receive("*l")
        if not crlf then
            return nil, "reading chunk end: " .. err
        end
    end
end

-- request(port, method, path [, body [, headers]]) -> status, body | nil, err
-- body: a string (sent as is) or a table (sent as JSON).
function _M.request(port, method, path, body, headers)
    local sock = ngx.socket.tcp()
    sock:settimeout(TIMEOUT_MS)

    local ok, err = sock:connect("127.0.0.1", port)
    if not ok then
        return nil, "connect to 127.0.0.1:" .. tostring(port) .. ": " .. err
    end

    if type(body) == "table" then
        body, err = cjson.encode(body)
        if not body then
            sock:close()
            return nil, "encoding body: " .. err
        end
    end

    local req = {
        method, " ", path, " HTTP/1.1\r\n",
        "Host: 127.0.0.1:", tostring(port), "\r\n",
        "Connection: close\r\n",
        "Accept: application/json\r\n",
    }
    local has_ctype = false
    for k, v in pairs(headers or {}) do
        if k:lower() == "content-type" then
            has_ctype = true
        end
        req[#req + 1] = k .. ": " .. v .. "\r\n"
    end
    if body then
        if not has_ctype then
            req[#req + 1] = "Content-Type: application/json\r\n"
        end
        req[#req + 1] = "Content-Length: " .. #body .. "\r\n"
    end
    req[#req + 1] = "\r\n"
    req[#req + 1] = body

    ok, err = sock:send(req)
    if not ok then
        sock:close()
        return nil, "sending request: " .. err
    end

    local line
    line, err = sock:receive("*l")
    if not line then
        sock:close()
        return nil, "reading status line: " .. err
    end
    local status = tonumber(line:match("^HTTP/%d[%.%d]*%s+(%d%d%d)"))
    if not status then
        sock:close()
        return nil, "bad status line: " .. line
    end

    local resp_headers = {}
    while true do
        line, err = sock:receive("*l")
        if not line then
            sock:close()
            return nil, "reading headers: " .. err
        end
        if line == "" then
            break
        end
        local name, value = line:match("^([^:]+):%s*(.-)%s*$")
        if name then
            resp_headers[name:lower()] = value
        end
    end

    local resp_body
    local te = resp_headers["transfer-encoding"]
    local len = tonumber(resp_headers["content-length"])
    if method == "HEAD" or status == 204 or status == 304 then
        resp_body = ""
    elseif te and te:lower():find("chunked", 1, true) then
        resp_body, err = read_chunked(sock)
    elseif len then
        resp_body, err = sock:receive(len)
    else
        resp_body, err = sock:receive("*a")
    end
    sock:close()
    if not resp_body then
        return nil, "reading body: " .. err
    end
    return status, resp_body, resp_headers
end

-- stats(port) -> table | nil, err: the fake server's counters
-- (GET /fake/stats).
function _M.stats(port)
    local status, body = _M.request(port, "GET", "/fake/stats")
    if not status then
        return nil, body
    end
    if status ~= 200 then
        return nil, "GET /fake/stats: status " .. status .. ": " .. body
    end
    local data, err = cjson.decode(body)
    if data == nil then
        return nil, "GET /fake/stats: bad JSON: " .. tostring(err)
    end
    return data
end

return _M
