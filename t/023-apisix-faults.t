# The correct behaviour where APISIX's kubernetes discovery has known bugs: stale services
# removed by a relist without a gap for the others, a failed list (first page or a later one) deleting nothing,
# watches resumed from the last resourceVersion instead of relisting, Retry-After honoured, a full shared-memory
# region keeping the previous data and saying so once, and tokens masked in the dump.

use lib 't/lib';
use K8sDiscTest;
use File::Temp ();

master_on();
workers(2);
repeat_each(1);
no_shuffle();
log_level('info');

# Clears the fake server (objects, faults, counters) and creates keep/keep (2 nodes), ns-b/keep (2 nodes) and
# ns-a/stale (2 nodes). Used in every block's --- init, so blocks do not depend on each other.
sub reset_and_seed {
    my $st = fake_api('POST', '/fake/reset');
    die "reset: $st" unless $st == 200;
    for my $obj (['ns-a', 'keep'], ['ns-b', 'keep'], ['ns-a', 'stale']) {
        my ($ns, $name) = @$obj;
        $st = fake_api('POST', "/api/v1/namespaces/$ns/endpoints", {
            metadata => { name => $name },
            subsets  => [{ addresses => [{ ip => '10.0.0.1' }, { ip => '10.0.0.2' }],
                           ports => [{ name => 'http', port => 80 }] }],
        });
        die "seeding $ns/$name: $st" unless $st == 201;
    }
}
reset_and_seed();

my $token_dir = File::Temp::tempdir(CLEANUP => 1);
$ENV{TEST_NGINX_TOKEN_FILE} = "$token_dir/token";
open my $tf, '>', $ENV{TEST_NGINX_TOKEN_FILE} or die "token file: $!";
print $tf "s3cr3t-file-token\n";
close $tf;

# `--- discovery_conf` (a Lua table literal) is APISIX's discovery.kubernetes; the default is one cluster on
# this file's fake server.
add_block_preprocessor(sub {
    my $block = shift;
    return if defined $block->http_config || !defined $block->config;
    my $conf = $block->discovery_conf
        // '{ service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" },'
         . ' client = { token = "t" }, shared_size = "4m" }';
    $block->set_value('http_config', apisix_http_config($conf));
});

plan tests => 17;

run_tests();

__DATA__

=== TEST 1: a service deleted while the watch was down is removed by the relist; the others are never missing
--- init
main::reset_and_seed();
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            local t = require("k8s_test")
            local fake = require("fake_api")
            local k8s = require("apisix.discovery.kubernetes")
            local port = $TEST_NGINX_FAKE_API_PORT
            local names = { "ns-a/keep:http", "ns-b/keep:http", "ns-a/stale:http" }
            a.say_counts("", names, "2 2 2")

            -- Watch the kept services continuously from now on.
            local done, checks, gaps = false, 0, 0
            local poller = ngx.thread.spawn(function()
                while not done do
                    for i = 1, 2 do
                        local n = k8s.nodes(names[i])
                        if not n or #n ~= 2 then gaps = gaps + 1 end
                    end
                    checks = checks + 1
                    ngx.sleep(0.002)
                end
            end)

            local lists_before = a.status("").lists
            -- Keep the watcher away for a while: its next watch request is held 1.5 s. Then drop the watch, delete
            -- the service while nobody watches, and compact, so the watch cannot resume (410) and must relist.
            a.admin(port, "/fake/faults", { kind = "delay_ms", path_prefix = "/api/v1/endpoints", watch = true,
                                            ms = 1500, count = 1 })
            ngx.say("watches reset: ", a.admin(port, "/fake/reset-watches").reset)
            t.delete(port, "Endpoints", "ns-a", "stale")
            a.admin(port, "/fake/compact")

            -- Up to two back-off steps (reconnect, then relist after the 410) plus the 1.5 s delay.
            a.say_counts("", names, "2 2 0", 15)
            ngx.say("stale: ", tostring(k8s.nodes("ns-a/stale:http")))
            ngx.say("relisted: ", a.status("").lists > lists_before)
            done = true
            ngx.thread.wait(poller)
            ngx.say("kept services checked often: ", checks > 100, ", missing meanwhile: ", gaps)
        }
    }
--- request
GET /t
--- response_body
single: 2 2 2
watches reset: 1
single: 2 2 0
stale: nil
relisted: true
kept services checked often: true, missing meanwhile: 0
--- timeout: 20
--- error_log
removed stale service ns-a/stale: not in the latest full list



=== TEST 2: failed lists (on the first page, then on a later page) delete nothing; the next complete list wins
--- discovery_conf
{ service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" },
  client = { token = "t" }, shared_size = "4m", list_strategy = "list" }
--- init
main::reset_and_seed();
# 1200 more services, so that a list needs more than one page (pages hold 500 items).
my @bulk = map { {
    kind => 'Endpoints', apiVersion => 'v1', metadata => { name => "svc-$_", namespace => 'bulk' },
    subsets => [{ addresses => [{ ip => '10.2.0.1' }], ports => [{ name => 'http', port => 80 }] }],
} } 1 .. 1200;
my $st = fake_api('POST', '/fake/apply', \@bulk);
die "bulk apply: $st" unless $st == 200;
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            local k8s = require("apisix.discovery.kubernetes")
            local fake = require("fake_api")
            local port = $TEST_NGINX_FAKE_API_PORT

            local function served()
                local n = 0
                for i = 1, 1200 do
                    if k8s.nodes("bulk/svc-" .. i .. ":http") then n = n + 1 end
                end
                for _, name in ipairs({"ns-a/keep:http", "ns-b/keep:http", "ns-a/stale:http"}) do
                    if k8s.nodes(name) then n = n + 1 end
                end
                return n
            end
            ngx.say("served: ", require("k8s_test").wait_until(function() return served() == 1203 end, 10)
                                and 1203 or served())

            local done, lowest = false, math.huge
            local poller = ngx.thread.spawn(function()
                while not done do
                    lowest = math.min(lowest, served())
                    ngx.sleep(0.005)
                end
            end)

            local lists_before = a.status("").lists
            -- The watch is ended and cannot resume (410), so the watcher relists; the first attempt fails on its
            -- first page, the second on a later page (APISIX ignores that one and deletes what it did not see).
            a.admin(port, "/fake/faults", {
                { path_prefix = "/api/v1/endpoints", watch = true, status = 410, count = 1 },
                { path_prefix = "/api/v1/endpoints", watch = false, status = 500, count = 1 },
                { path_prefix = "/api/v1/endpoints", watch = false, query_contains = "continue=", status = 500,
                  count = 1 },
            })
            a.admin(port, "/fake/close-watches")
            local t = require("k8s_test")
            local ok = t.wait_until(function()
                return fake.stats(port).faults_pending == 0 and a.status("").lists > lists_before
            end, 15)
            done = true
            ngx.thread.wait(poller)
            ngx.say("faults used and relisted: ", ok == true)
            ngx.say("fewest served meanwhile: ", lowest)
            local s = a.status("")
            ngx.say("complete lists since: ", s.lists - lists_before, ", error cleared: ", s.last_error == nil)
            ngx.say("served: ", served())
        }
    }
--- request
GET /t
--- response_body
served: 1203
faults used and relisted: true
fewest served meanwhile: 1203
complete lists since: 1, error cleared: true
served: 1203
--- timeout: 20
--- error_log
list Endpoints failed: HTTP 500



=== TEST 3: a reset watch connection resumes from the last resourceVersion: no relist, and changes still arrive
--- init
main::reset_and_seed();
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            local t = require("k8s_test")
            local fake = require("fake_api")
            local port = $TEST_NGINX_FAKE_API_PORT
            a.say_counts("", { "ns-a/keep:http" }, "2")
            local before = fake.stats(port)
            ngx.say("watches reset: ", a.admin(port, "/fake/reset-watches").reset)
            -- Changed while the watcher reconnects: only the resumed watch can deliver it.
            t.apply(port, t.endpoints("ns-a", "keep", {"10.0.0.1", "10.0.0.2", "10.0.0.3"}, {{name = "http", port = 80}}))
            a.say_counts("", { "ns-a/keep:http" }, "3")
            local after = fake.stats(port)
            ngx.say("new lists: ", after.lists - before.lists)
            ngx.say("new watches: ", after.watches_started - before.watches_started >= 1)
            local resumed = false
            for _, r in ipairs(after.requests) do
                if r:find("watch=", 1, true) and r:find("resourceVersion=" .. before.resourceVersion, 1, true) then
                    resumed = true
                end
            end
            ngx.say("watch resumed from the resourceVersion of before the reset: ", resumed)
        }
    }
--- request
GET /t
--- response_body
single: 2
watches reset: 1
single: 3
new lists: 0
new watches: true
watch resumed from the resourceVersion of before the reset: true
--- timeout: 10



=== TEST 4: a 429 with Retry-After: 3 is retried after the server's delay, not sooner, without a relist
--- init
main::reset_and_seed();
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            local t = require("k8s_test")
            local fake = require("fake_api")
            local port = $TEST_NGINX_FAKE_API_PORT
            local http = {{name = "http", port = 80}}
            -- A change first, so that the current watch has delivered events and ends without back-off.
            t.apply(port, t.endpoints("ns-a", "keep", {"10.0.0.1", "10.0.0.2", "10.0.0.3"}, http))
            a.say_counts("", { "ns-a/keep:http" }, "3")
            local lists = fake.stats(port).lists
            a.admin(port, "/fake/faults", { path_prefix = "/api/v1/endpoints", watch = true, status = 429,
                                            retry_after = 3, count = 1 })
            a.admin(port, "/fake/close-watches")
            ngx.update_time()
            local start = ngx.now()
            t.apply(port, t.endpoints("ns-a", "keep", {"10.0.0.1"}, http))
            a.say_counts("", { "ns-a/keep:http" }, "1", 10)
            ngx.update_time()
            local waited = ngx.now() - start
            ngx.say("waited at least Retry-After: ", waited >= 2.9, ", and not much longer: ", waited < 6)
            ngx.say("429 served: ", fake.stats(port).faults_pending == 0, ", new lists: ", fake.stats(port).lists - lists)
        }
    }
--- request
GET /t
--- response_body
single: 3
single: 1
waited at least Retry-After: true, and not much longer: true
429 served: true, new lists: 0
--- timeout: 15
--- error_log
watch Endpoints failed: HTTP 429



=== TEST 5: a region too small for an update keeps the previous data, logs once, and shows it in the dump
--- discovery_conf
{ service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" }, client = { token = "t" },
  shared_size = "1m" }
--- init
main::reset_and_seed();
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            local t = require("k8s_test")
            local k8s = require("apisix.discovery.kubernetes")
            local port = $TEST_NGINX_FAKE_API_PORT
            local http = {{name = "http", port = 80}}
            local function big(n)
                local ips = {}
                for i = 1, n do
                    ips[i] = string.format("10.%d.%d.%d", 100 + math.floor(i / 65536), math.floor(i / 256) % 256, i % 256)
                end
                return t.endpoints("ns-a", "keep", ips, http)
            end
            a.say_counts("", { "ns-a/keep:http" }, "2")
            local before = k8s.nodes("ns-a/keep:http")

            t.apply(port, big(60000))
            local s = t.wait_until(function()
                local st = a.status("")
                return st.full_rejections > 0 and st.pending_full > 0 and st
            end, 10)
            ngx.say("rejected: ", s and s.full_rejections > 0, ", pending: ", s and s.pending_full)
            ngx.say("previous data served: ", k8s.nodes("ns-a/keep:http") == before, " ", #before)

            -- Another oversized update while still full: no second log line. Other services still update.
            t.apply(port, big(60001))
            t.apply(port, t.endpoints("ns-b", "keep", {"10.0.0.9"}, http))
            a.say_counts("", { "ns-b/keep:http", "ns-a/keep:http" }, "1 2")

            -- Back to a size that fits: written, nothing pending.
            t.apply(port, t.endpoints("ns-a", "keep", {"10.0.0.1", "10.0.0.2", "10.0.0.3"}, http))
            a.say_counts("", { "ns-a/keep:http" }, "3")
            ngx.say("pending after: ", a.status("").pending_full)
        }
    }
--- request
GET /t
--- response_body
single: 2
rejected: true, pending: 1
previous data served: true 2
single: 1 2
single: 3
pending after: 0
--- timeout: 20
--- grep_error_log eval
qr/shared memory region full/
--- grep_error_log_out
shared memory region full



=== TEST 6: tokens never appear in the dump (APISIX shows them verbatim on the control API)
--- discovery_conf
{
    { id = "one", service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" },
      client = { token = "s3cr3t-token-value" }, shared_size = "1m" },
    { id = "two", service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" },
      client = { token_file = "$TEST_NGINX_TOKEN_FILE" }, shared_size = "1m" },
}
--- init
main::reset_and_seed();
--- config
    location = /t {
        content_by_lua_block {
            local a = require("apisix_t")
            local cjson = require("cjson.safe")
            a.say_counts("one", { "ns-a/keep:http" }, "2")
            a.say_counts("two", { "ns-a/keep:http" }, "2")
            local d = require("apisix.discovery.kubernetes").dump_data()
            local text = cjson.encode(d)
            ngx.say("secrets in dump: ", text:find("s3cr3t", 1, true) ~= nil)
            ngx.say("one: token=", d.config[1].client.token)
            ngx.say("two: token_file=", d.config[2].client.token_file, ", token=", tostring(d.config[2].client.token))
        }
    }
--- request
GET /t
--- response_body eval
"one: 2
two: 2
secrets in dump: false
one: token=******
two: token_file=$ENV{TEST_NGINX_TOKEN_FILE}, token=nil
"
--- timeout: 10
--- no_error_log
s3cr3t
