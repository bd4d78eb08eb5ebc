-- A line-based client for the test stream servers of t/031-stream.t, from an http location:
--
--   local st = require "stream_client"
--   local s = st.connect(port)      -- keeps the connection
--   local answer = s:ask("ready")   -- sends a line, returns the answer line (nil, err on errors)
--   local line = st.request(port)   -- connects, reads one line, closes

local _M = {}

local Conn = {}
Conn.__index = Conn

function _M.connect(port)
    local sock = ngx.socket.tcp()
    sock:settimeout(5000)
    assert(sock:connect("127.0.0.1", port))
    return setmetatable({ sock = sock }, Conn)
end

function Conn:ask(line)
    local ok, err = self.sock:send(line .. "\n")
    if not ok then
        return nil, err
    end
    return self.sock:receive("*l")
end

function _M.request(port)
    local sock = ngx.socket.tcp()
    sock:settimeout(5000)
    local ok, err = sock:connect("127.0.0.1", port)
    if not ok then
        return nil, err
    end
    local line
    line, err = sock:receive("*l")
    sock:close()
    return line, err
end

return _M
