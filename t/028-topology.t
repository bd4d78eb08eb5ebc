# Topology-aware nodes: EndpointSlices in three zones (za, zb, zc), served by clusters with each topology mode.
# Every cluster watches the same fake API server, so one service shows what each mode makes of the same endpoints.

use lib 't/lib';
use K8sDiscTest;
use IO::Socket::INET ();

master_on();
workers(2);
repeat_each(1);
no_shuffle();
log_level('info');

$ENV{NODE_ZONE} = 'za';
$ENV{EMPTY_ZONE} = '';

sub ep {
    my ($ip, $zone, $hints) = @_;
    my $e = { addresses => [$ip], conditions => { ready => JSON::PP::true() } };
    $e->{zone} = $zone if defined $zone;
    $e->{hints} = { forZones => [ map { { name => $_ } } @$hints ] } if $hints;
    return $e;
}

sub put_slice {
    my ($name, $svc, $endpoints) = @_;
    my $st = fake_api('POST', '/apis/discovery.k8s.io/v1/namespaces/ns-t/endpointslices', {
        apiVersion => 'discovery.k8s.io/v1', kind => 'EndpointSlice',
        metadata => { name => $name, namespace => 'ns-t', labels => { 'kubernetes.io/service-name' => $svc } },
        addressType => 'IPv4', endpoints => $endpoints, ports => [{ name => 'http', port => 80 }],
    });
    die "slice $name: $st" unless $st == 201;
}

# Free ports for two backends on loopback (one in za, one in zb) and a port nobody listens on, taken from the
# kernel and released.
for my $var ('TEST_NGINX_ZA_PORT', 'TEST_NGINX_ZB_PORT', 'TEST_NGINX_CLOSED_PORT') {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
        or die "free port: $!";
    $ENV{$var} = $s->sockport;
    close $s;
}

sub put_port_slice {
    my ($name, $svc, $zone, $port) = @_;
    my $st = fake_api('POST', '/apis/discovery.k8s.io/v1/namespaces/ns-t/endpointslices', {
        apiVersion => 'discovery.k8s.io/v1', kind => 'EndpointSlice',
        metadata => { name => $name, namespace => 'ns-t', labels => { 'kubernetes.io/service-name' => $svc } },
        addressType => 'IPv4', endpoints => [ep('127.0.0.1', $zone)], ports => [{ name => 'http', port => $port + 0 }],
    });
    die "slice $name: $st" unless $st == 201;
}

# lb: its za and zb backends both up. lbdown: its za backend down (the closed port), its zb backend up.
put_port_slice('lb-za', 'lb', 'za', $ENV{TEST_NGINX_ZA_PORT});
put_port_slice('lb-zb', 'lb', 'zb', $ENV{TEST_NGINX_ZB_PORT});
put_port_slice('lbdown-za', 'lbdown', 'za', $ENV{TEST_NGINX_CLOSED_PORT});
put_port_slice('lbdown-zb', 'lbdown', 'zb', $ENV{TEST_NGINX_ZB_PORT});

# web: one slice per zone, every endpoint hinted for its own zone. mixed: one endpoint without hints.
put_slice('web-za', 'web', [ep('10.1.0.1', 'za', ['za']), ep('10.1.0.2', 'za', ['za'])]);
put_slice('web-zb', 'web', [ep('10.2.0.1', 'zb', ['zb'])]);
put_slice('web-zc', 'web', [ep('10.3.0.1', 'zc', ['zc'])]);
put_slice('mixed-1', 'mixed', [ep('10.4.0.1', 'za', ['za']), ep('10.4.0.2', 'zb')]);

# Clusters: pz (prefer_zone in za, the zone from ${NODE_ZONE}), hb (hints in zb), hd (hints in zd, where no
# endpoint is hinted), off (no topology key: nodes exactly as without the feature).
my $clusters = <<'_EOC_';
{
            { id = "pz", service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" },
              client = { token = "t" }, shared_size = "1m", watch_endpoint_slices = true,
              topology = { mode = "prefer_zone", zone = "${NODE_ZONE}" } },
            { id = "hb", service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" },
              client = { token = "t" }, shared_size = "1m", watch_endpoint_slices = true,
              topology = { mode = "hints", zone = "zb" } },
            { id = "hd", service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" },
              client = { token = "t" }, shared_size = "1m", watch_endpoint_slices = true,
              topology = { mode = "hints", zone = "zd" } },
            { id = "off", service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" },
              client = { token = "t" }, shared_size = "1m", watch_endpoint_slices = true },
        }
_EOC_

# Plain OpenResty with the clusters above, unless the block brings `--- discovery_conf` or its own http_config.
add_block_preprocessor(sub {
    my $block = shift;
    return if defined $block->http_config || !defined $block->config;
    my $conf = $block->discovery_conf // $clusters;
    $block->set_value('http_config', <<_EOC_);
    init_by_lua_block {
        require("resty.k8s_disc").init($conf)
    }
    init_worker_by_lua_block {
        require("resty.k8s_disc").init_worker()
    }
_EOC_
});

plan tests => 41;

run_tests();

__DATA__

=== TEST 1: each mode's priorities for the same endpoints; off has no priority at all
--- config
    location = /t {
        content_by_lua_block {
            local t = require("k8s_test")
            local k8s_disc = require("resty.k8s_disc")
            assert(t.wait_ready(5), "discovery not ready")
            local function show(name)
                local out = {}
                for i, n in ipairs(k8s_disc.nodes(name)) do
                    out[i] = n.host .. "=" .. tostring(n.priority)
                end
                ngx.say(name, ": ", table.concat(out, " "))
            end
            for _, c in ipairs({ "pz", "hb", "hd", "off" }) do
                show(c .. "/ns-t/web:http")
            end
            show("hb/ns-t/mixed:http")
            show("pz/ns-t/mixed:http")
            -- Without topology a node has exactly host, port and weight.
            local keys = {}
            for k in pairs(k8s_disc.nodes("off/ns-t/web:http")[1]) do keys[#keys + 1] = k end
            table.sort(keys)
            ngx.say("off node keys: ", table.concat(keys, " "))
            keys = {}
            for k in pairs(k8s_disc.nodes("pz/ns-t/web:http")[1]) do keys[#keys + 1] = k end
            table.sort(keys)
            ngx.say("pz node keys: ", table.concat(keys, " "))
        }
    }
--- request
GET /t
--- response_body
pz/ns-t/web:http: 10.1.0.1=0 10.1.0.2=0 10.2.0.1=-1 10.3.0.1=-1
hb/ns-t/web:http: 10.1.0.1=-1 10.1.0.2=-1 10.2.0.1=0 10.3.0.1=-1
hd/ns-t/web:http: 10.1.0.1=0 10.1.0.2=0 10.2.0.1=0 10.3.0.1=0
off/ns-t/web:http: 10.1.0.1=nil 10.1.0.2=nil 10.2.0.1=nil 10.3.0.1=nil
hb/ns-t/mixed:http: 10.4.0.1=0 10.4.0.2=0
pz/ns-t/mixed:http: 10.4.0.1=0 10.4.0.2=-1
off node keys: host port weight
pz node keys: host port priority weight
--- no_error_log
[error]
[warn]



=== TEST 2: the lookup API and the dump show each node's zone and priority
--- config
    location = /t {
        content_by_lua_block {
            local t = require("k8s_test")
            local k8s_disc = require("resty.k8s_disc")
            local cjson = require("cjson")
            assert(t.wait_ready(5), "discovery not ready")
            for _, n in ipairs(k8s_disc.lookup("pz/ns-t/web:http").nodes) do
                ngx.say(n.host, " zone=", n.zone, " priority=", n.priority, " weight=", n.weight)
            end
            local off = k8s_disc.lookup("off/ns-t/web:http").nodes[1]
            ngx.say("off: zone=", tostring(off.zone), " priority=", tostring(off.priority))
            for _, c in ipairs(k8s_disc.dump().endpoints) do
                for _, e in ipairs(c.endpoints) do
                    if e.name == "ns-t/mixed" then
                        local n = cjson.decode(e.value).http[2]
                        ngx.say(c.id, " dump: ", n.host, " zone=", tostring(n.zone), " priority=", tostring(n.priority))
                    end
                end
            end
            local topo = k8s_disc.dump().config[2].topology
            ngx.say("dump config: mode=", topo.mode, " zone=", topo.zone)
        }
    }
--- request
GET /t
--- response_body
10.1.0.1 zone=za priority=0 weight=50
10.1.0.2 zone=za priority=0 weight=50
10.2.0.1 zone=zb priority=-1 weight=50
10.3.0.1 zone=zc priority=-1 weight=50
off: zone=nil priority=nil
pz dump: 10.4.0.2 zone=zb priority=-1
hb dump: 10.4.0.2 zone=zb priority=0
hd dump: 10.4.0.2 zone=zb priority=0
off dump: 10.4.0.2 zone=nil priority=nil
dump config: mode=hints zone=zb
--- no_error_log
[error]



=== TEST 3: the same table while nothing changes; when the zone's endpoints stop being ready the others serve, and an endpoint that moves zone changes priority
--- config
    location = /t {
        content_by_lua_block {
            local t = require("k8s_test")
            local k8s_disc = require("resty.k8s_disc")
            local port = $TEST_NGINX_FAKE_API_PORT
            assert(t.wait_ready(5), "discovery not ready")
            local name = "pz/ns-t/web:http"
            local first = k8s_disc.nodes(name)
            ngx.say("same table while unchanged: ", k8s_disc.nodes(name) == first)
            local function prios()
                local out = {}
                for i, n in ipairs(k8s_disc.nodes(name)) do out[i] = n.host .. "=" .. n.priority end
                return table.concat(out, " ")
            end
            local function slice(sname, endpoints)
                return { apiVersion = "discovery.k8s.io/v1", kind = "EndpointSlice",
                         metadata = { name = sname, namespace = "ns-t",
                                      labels = { ["kubernetes.io/service-name"] = "web" } },
                         addressType = "IPv4", endpoints = endpoints, ports = { { name = "http", port = 80 } } }
            end
            local function ep(ip, zone, ready)
                return { addresses = { ip }, zone = zone, conditions = { ready = ready } }
            end
            -- The za pods stop being ready: only the other zones are left, all at one priority.
            t.apply(port, slice("web-za", { ep("10.1.0.1", "za", false), ep("10.1.0.2", "za", false) }))
            local want = "10.2.0.1=-1 10.3.0.1=-1"
            ngx.say("za not ready: ", t.wait_until(function() return prios() == want end, 5) and want or prios())
            ngx.say("new table: ", k8s_disc.nodes(name) ~= first)
            -- The zb endpoint is rescheduled into za: it becomes preferred.
            t.apply(port, slice("web-zb", { ep("10.2.0.1", "za", true) }))
            want = "10.2.0.1=0 10.3.0.1=-1"
            ngx.say("moved to za: ", t.wait_until(function() return prios() == want end, 5) and want or prios())
            -- The za pods are back.
            t.apply(port, slice("web-za", { ep("10.1.0.1", "za", true), ep("10.1.0.2", "za", true) }))
            t.apply(port, slice("web-zb", { ep("10.2.0.1", "zb", true) }))
            want = "10.1.0.1=0 10.1.0.2=0 10.2.0.1=-1 10.3.0.1=-1"
            ngx.say("restored: ", t.wait_until(function() return prios() == want end, 5) and want or prios())
            local again = k8s_disc.nodes(name)
            ngx.say("same table while unchanged: ", k8s_disc.nodes(name) == again)
        }
    }
--- request
GET /t
--- response_body
same table while unchanged: true
za not ready: 10.2.0.1=-1 10.3.0.1=-1
new table: true
moved to za: 10.2.0.1=0 10.3.0.1=-1
restored: 10.1.0.1=0 10.1.0.2=0 10.2.0.1=-1 10.3.0.1=-1
same table while unchanged: true
--- no_error_log
[error]



=== TEST 4: a zone that resolves to an empty string: a warning at start, and no zone is preferred
--- discovery_conf
{ service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" }, client = { token = "t" },
  shared_size = "1m", watch_endpoint_slices = true, topology = { mode = "prefer_zone", zone = "${EMPTY_ZONE}" } }
--- config
    location = /t {
        content_by_lua_block {
            local t = require("k8s_test")
            assert(t.wait_ready(5), "discovery not ready")
            local out = {}
            for i, n in ipairs(require("resty.k8s_disc").nodes("ns-t/web:http")) do
                out[i] = n.host .. "=" .. n.priority
            end
            ngx.say(table.concat(out, " "))
        }
    }
--- request
GET /t
--- response_body
10.1.0.1=0 10.1.0.2=0 10.2.0.1=0 10.3.0.1=0
--- error_log
topology.mode is prefer_zone but topology.zone is empty
--- no_error_log
[error]



=== TEST 5: a mode with v1 Endpoints is refused at start, naming the field
--- discovery_conf
{ service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" }, client = { token = "t" },
  topology = { mode = "prefer_zone", zone = "za" } }
--- config
    location = /t { return 200; }
--- must_die
--- error_log
invalid discovery config: topology.mode = "prefer_zone": needs watch_endpoint_slices: true (v1 Endpoints objects carry no zone)



=== TEST 6: an unknown mode is refused at start (multi-cluster: the index says which cluster)
--- discovery_conf
{ { id = "a", service = { schema = "http", host = "127.0.0.1", port = "1" }, client = { token = "t" },
    watch_endpoint_slices = true, topology = { mode = "prefer_region", zone = "za" } } }
--- config
    location = /t { return 200; }
--- must_die
--- error_log
invalid discovery config: [0].topology.mode = "prefer_region": must be one of off, prefer_zone, hints



=== TEST 7: a mode without a zone is refused at start
--- discovery_conf
{ service = { schema = "http", host = "127.0.0.1", port = "1" }, client = { token = "t" },
  watch_endpoint_slices = true, topology = { mode = "hints" } }
--- config
    location = /t { return 200; }
--- must_die
--- error_log
invalid discovery config: topology.zone = (missing): required when topology.mode is hints



=== TEST 8: through the APISIX adapter: the schema takes the keys, and nodes carry their priority
--- http_config eval
main::apisix_http_config(<<'_EOC_');
{ service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" }, client = { token = "t" },
  shared_size = "1m", watch_endpoint_slices = true, topology = { mode = "prefer_zone", zone = "zc" } }
_EOC_
--- config
    location = /t {
        content_by_lua_block {
            local t = require("k8s_test")
            local disc = require("apisix.discovery.kubernetes")
            assert(t.wait_until(function() return disc.check_discovery_ready() end, 5), "not ready")
            local out = {}
            for i, n in ipairs(disc.nodes("ns-t/web:http")) do
                out[i] = n.host .. ":" .. n.port .. "/" .. n.weight .. "/" .. n.priority
            end
            ngx.say(table.concat(out, " "))
            local topo = disc.dump_data().config.topology
            ngx.say("dump config: mode=", topo.mode, " zone=", topo.zone)
        }
    }
--- request
GET /t
--- response_body
10.1.0.1:80/50/-1 10.1.0.2:80/50/-1 10.2.0.1:80/50/-1 10.3.0.1:80/50/0
dump config: mode=prefer_zone zone=zc
--- no_error_log
[error]



=== TEST 9: plain OpenResty: a balancer that tries the priority-0 nodes first and the others on the retry
--- http_config
    init_by_lua_block {
        require("resty.k8s_disc").init({
            service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" },
            client = { token = "t" }, shared_size = "1m", watch_endpoint_slices = true,
            topology = { mode = "prefer_zone", zone = "za" },
        })
    }
    init_worker_by_lua_block { require("resty.k8s_disc").init_worker() }

    upstream k8s {
        server 0.0.0.1;   # placeholder: balancer_by_lua picks the peer
        balancer_by_lua_block {
            local balancer = require("ngx.balancer")
            local nodes = require("resty.k8s_disc").nodes(ngx.var.k8s_service)
            if not nodes or #nodes == 0 then
                return ngx.exit(503)
            end
            -- First try: a node of the gateway's zone (priority 0); the retry: one of the other zones.
            local retry = ngx.ctx.k8s_tried
            ngx.ctx.k8s_tried = true
            local pool = {}
            for _, n in ipairs(nodes) do
                if ((n.priority or 0) < 0) == (retry == true) then
                    pool[#pool + 1] = n
                end
            end
            if #pool == 0 then
                pool = nodes
            end
            if not retry then
                balancer.set_more_tries(1)
            end
            local node = pool[math.random(#pool)]
            assert(balancer.set_current_peer(node.host, node.port))
        }
    }

    server {
        listen 127.0.0.1:$TEST_NGINX_ZA_PORT;
        location / { return 200 "za"; }
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_ZB_PORT;
        location / { return 200 "zb"; }
    }
--- config
    location /lb {
        set $k8s_service "ns-t/lb:http";
        proxy_pass http://k8s/;
    }
    location /lbdown {
        set $k8s_service "ns-t/lbdown:http";
        proxy_pass http://k8s/;
    }
    location = /t {
        content_by_lua_block {
            local t = require("k8s_test")
            assert(t.wait_ready(5), "discovery not ready")
            local function answers(uri)
                local seen = {}
                for _ = 1, 20 do
                    local sock = ngx.socket.tcp()
                    assert(sock:connect("127.0.0.1", ngx.var.server_port))
                    sock:send("GET " .. uri .. " HTTP/1.0\r\nHost: t\r\n\r\n")
                    local body = sock:receive("*a"):match("\r\n\r\n(.*)$")
                    seen[body] = (seen[body] or 0) + 1
                    sock:close()
                end
                local out = {}
                for k, n in pairs(seen) do out[#out + 1] = k .. "=" .. n end
                table.sort(out)
                return table.concat(out, " ")
            end
            ngx.say("both zones up: ", answers("/lb"))
            ngx.say("za backend down: ", answers("/lbdown"))
        }
    }
--- request
GET /t
--- response_body
both zones up: za=20
za backend down: zb=20
--- error_log
connect() failed (111: Connection refused)



=== TEST 10: a reload that turns the mode on, then off again: the reused region's nodes follow the new config
--- http_config
    init_by_lua_block {
        -- The mode comes from a file that /reload writes, so each reload brings a changed config.
        local f = io.open(ngx.config.prefix() .. "conf/topology-mode")
        local mode = f and f:read("*l") or "off"
        if f then f:close() end
        require("resty.k8s_disc").init({
            service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" },
            client = { token = "t" }, shared_size = "1m", watch_endpoint_slices = true,
            topology = { mode = mode, zone = "za" },
        })
    }
    init_worker_by_lua_block { require("resty.k8s_disc").init_worker() }
--- config
    location = /reload {
        content_by_lua_block {
            assert(require("k8s_test").wait_ready(5))
            local f = assert(io.open(ngx.config.prefix() .. "conf/topology-mode", "w"))
            f:write(ngx.var.arg_mode, "\n")
            f:close()
            local ffi = require("ffi")
            pcall(ffi.cdef, "int kill(int pid, int sig);")
            f = assert(io.open(ngx.config.prefix() .. "logs/nginx.pid"))
            local pid = tonumber(f:read("*l"))
            f:close()
            ngx.say("reload to ", ngx.var.arg_mode, ": ", ffi.C.kill(pid, 1) == 0)
        }
    }
    location = /after {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local t = require("k8s_test")
            local function prios()
                local nodes = k8s_disc.nodes("ns-t/web:http")
                if not nodes then return "none" end
                local out = {}
                for i, n in ipairs(nodes) do out[i] = n.host .. "=" .. tostring(n.priority) end
                return table.concat(out, " ")
            end
            local want = ngx.var.arg_want:gsub("_", " ")
            -- A worker of the new configuration answers this request; its data follow once the new watcher has
            -- listed.
            local seen = t.wait_until(function() return prios() == want end, 8)
            ngx.say(seen and want or prios())
        }
    }
--- timeout: 30
--- request eval
["GET /reload?mode=prefer_zone",
 "GET /after?want=10.1.0.1=0_10.1.0.2=0_10.2.0.1=-1_10.3.0.1=-1",
 "GET /reload?mode=off",
 "GET /after?want=10.1.0.1=nil_10.1.0.2=nil_10.2.0.1=nil_10.3.0.1=nil"]
--- response_body eval
["reload to prefer_zone: true\n",
 "10.1.0.1=0 10.1.0.2=0 10.2.0.1=-1 10.3.0.1=-1\n",
 "reload to off: true\n",
 "10.1.0.1=nil 10.1.0.2=nil 10.2.0.1=nil 10.3.0.1=nil\n"]
--- no_error_log
[error]



=== TEST 11: a service of 32 nodes or more: after one node changes priority, every other node keeps its table
--- config
    location = /t {
        content_by_lua_block {
            local t = require("k8s_test")
            local k8s_disc = require("resty.k8s_disc")
            local port = $TEST_NGINX_FAKE_API_PORT
            assert(t.wait_ready(5), "discovery not ready")
            local name = "pz/ns-t/big:http"
            -- 40 endpoints, alternately in za and zb; the second one moves from zb to za later.
            local function slice(moved)
                local endpoints = {}
                for i = 1, 40 do
                    local zone = (i % 2 == 1 or (moved and i == 2)) and "za" or "zb"
                    endpoints[i] = { addresses = { "10.9.0." .. i }, zone = zone, conditions = { ready = true } }
                end
                return { apiVersion = "discovery.k8s.io/v1", kind = "EndpointSlice",
                         metadata = { name = "big-1", namespace = "ns-t",
                                      labels = { ["kubernetes.io/service-name"] = "big" } },
                         addressType = "IPv4", endpoints = endpoints, ports = { { name = "http", port = 80 } } }
            end
            local function by_host()
                local m = {}
                for _, n in ipairs(k8s_disc.nodes(name) or {}) do m[n.host] = n end
                return m
            end
            t.apply(port, slice(false))
            assert(t.wait_until(function() local n = k8s_disc.nodes(name) return n and #n == 40 end, 5), "40 nodes")
            local before = by_host()
            ngx.say("10.9.0.2 before: ", before["10.9.0.2"].priority)
            t.apply(port, slice(true))
            assert(t.wait_until(function() return by_host()["10.9.0.2"].priority == 0 end, 5), "moved")
            local after = by_host()
            local kept, renewed, wrong = 0, 0, 0
            for host, n in pairs(after) do
                if n == before[host] then kept = kept + 1 else renewed = renewed + 1 end
                local want = (host == "10.9.0.2" or tonumber(host:match("%d+$")) % 2 == 1) and 0 or -1
                if n.priority ~= want then wrong = wrong + 1 end
            end
            ngx.say("10.9.0.2 after: ", after["10.9.0.2"].priority, ", a new table: ", after["10.9.0.2"] ~= before["10.9.0.2"])
            ngx.say("tables kept: ", kept, ", renewed: ", renewed, ", wrong priorities: ", wrong)
        }
    }
--- request
GET /t
--- response_body
10.9.0.2 before: -1
10.9.0.2 after: 0, a new table: true
tables kept: 39, renewed: 1, wrong priorities: 0
--- no_error_log
[error]
