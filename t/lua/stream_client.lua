-- A line-based client for the test stream servers of t/031-stream.t, from an http location:
--
--   local st = require "stream_client"
--   local s = st.connect(port)      -- keeps the connection
--   local answer = s:ask("ready")   -- sends a line, returns the answer line (nil, err on errors)
--   local line = st.request(port)   -- connects, reads one line, closes
--   st.through_balancer(s, fake_port, backend_port, balancer_port)   -- see below

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

-- Makes the stream backend on `backend_port` the node of ns-s/backend:tcp in the fake API server, waits until the
-- stream side (asked through `conn`) serves it, then connects to the balancer_by_lua server on `balancer_port`:
-- true when the answer comes from that backend.
function _M.through_balancer(conn, fake_port, backend_port, balancer_port)
    local t = require("k8s_test")
    t.apply(fake_port, t.endpoints("ns-s", "backend", {"127.0.0.1"}, {{name = "tcp", port = backend_port}}))
    t.wait_until(function()
        local nodes = conn:ask("nodes ns-s/backend:tcp")
        return nodes and nodes:find("127.0.0.1:" .. backend_port .. ":", 1, true)
    end, 5)
    return _M.request(balancer_port) == "backend " .. backend_port
end

return _M
