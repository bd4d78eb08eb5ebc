# Discovery in nginx against a real kube-apiserver (testenv/, started by scripts/test-real-apiserver.sh, which sets
# K8S_DISC_REAL_APISERVER): https with the server's own CA and a token, nodes in every worker, scale up and down,
# delete, namespace and label selectors, two clusters at once, and a wrong CA explained. Skipped without it.

use lib 't/lib';
use K8sDiscTest fake_api => 0;

my $dir = $ENV{K8S_DISC_REAL_APISERVER};
Test::More::plan(skip_all => 'K8S_DISC_REAL_APISERVER is not set (scripts/test-real-apiserver.sh starts a real '
    . 'kube-apiserver and sets it)') unless $dir;

sub slurp {
    my $path = shift;
    open my $fh, '<', $path or die "$path: $!";
    local $/;
    my $text = <$fh>;
    $text =~ s/\s+$//;
    return $text;
}

my ($port) = slurp("$dir/server") =~ /:(\d+)$/ or die "no port in $dir/server";
$ENV{TEST_NGINX_REAL_PORT} = $port;
$ENV{TEST_NGINX_REAL_TOKEN} = slurp("$dir/admin.token");
$ENV{TEST_NGINX_REAL_CA} = "$dir/ca.crt";
$ENV{TEST_NGINX_REAL_WRONG_CA} = "$dir/pki/client-ca.crt";
my $ns = "nginx-$$";
$ENV{TEST_NGINX_REAL_NS} = $ns;

# kube(METHOD, PATH, JSON): one request as the administrator; dies unless the server accepts it.
sub kube {
    my ($method, $path, $json) = @_;
    my @cmd = ('curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', "$dir/ca.crt",
               '-H', "Authorization: Bearer $ENV{TEST_NGINX_REAL_TOKEN}", '-X', $method,
               '-H', 'Content-Type: application/apply-patch+yaml', '--data-binary', $json,
               "https://127.0.0.1:$port$path?fieldManager=k8s-disc-t&force=true");
    my $code = qx{@{[ join ' ', map { "'$_'" } @cmd ]}};
    die "$method $path: HTTP $code\n" unless $code =~ /^20[01]$/;
}

kube('PATCH', "/api/v1/namespaces/$ns", qq({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"$ns"}}));
for my $svc (['web', 'front', ['10.50.0.2', '10.50.0.1', '10.50.0.3']], ['api', 'back', ['192.0.2.7']]) {
    my ($name, $tier, $ips) = @$svc;
    my $addrs = join ',', map { qq({"ip":"$_"}) } @$ips;
    kube('PATCH', "/api/v1/namespaces/$ns/endpoints/$name",
        qq({"apiVersion":"v1","kind":"Endpoints","metadata":{"namespace":"$ns","name":"$name","labels":{"tier":"$tier"}},)
        . qq("subsets":[{"addresses":[$addrs],"ports":[{"name":"http","port":80,"protocol":"TCP"}]}]}));
}

master_on();
workers(2);
repeat_each(1);
no_shuffle();
log_level('info');

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('main_config', "env TEST_NGINX_REAL_PORT;\nenv TEST_NGINX_REAL_TOKEN;\n")
        unless defined $block->main_config;
});

# Each block: status, body, one no_error_log or error_log line; TEST 1 checks two more log lines.
plan tests => blocks() * 3 + 2;

run_tests();

__DATA__

=== TEST 1: https with the server's CA: every worker serves the nodes, sorted
--- http_config
    init_by_lua_block {
        require("resty.k8s_disc").init({
            service = { schema = "https", host = "127.0.0.1", port = "$TEST_NGINX_REAL_PORT" },
            client = { token = "$TEST_NGINX_REAL_TOKEN", ca_file = "$TEST_NGINX_REAL_CA" },
            namespace_selector = { equal = "$TEST_NGINX_REAL_NS" },
            shared_size = "1m",
        })
    }
    init_worker_by_lua_block {
        local k8s_disc = require("resty.k8s_disc")
        k8s_disc.init_worker()
        local function report(premature, tries)
            if premature then return end
            local nodes = k8s_disc.nodes("$TEST_NGINX_REAL_NS/web:http")
            if nodes then
                ngx.log(ngx.INFO, "worker ", ngx.worker.id(), " sees ", #nodes, " nodes")
            elseif tries < 3000 then
                ngx.timer.at(0.01, report, tries + 1)
            end
        end
        ngx.timer.at(0, report, 0)
    }
--- config
    location = /t {
        content_by_lua_block {
            local t = require("k8s_test")
            assert(t.wait_ready(30), "discovery not ready")
            ngx.say(t.fmt_nodes(require("resty.k8s_disc").nodes("$TEST_NGINX_REAL_NS/web:http")))
            ngx.sleep(0.5)
        }
    }
--- request
GET /t
--- response_body
10.50.0.1:80:50 10.50.0.2:80:50 10.50.0.3:80:50
--- error_log
worker 0 sees 3 nodes
worker 1 sees 3 nodes
--- no_error_log
[error]



=== TEST 2: scale up, scale down and delete through the API are followed
--- http_config
    init_by_lua_block {
        require("resty.k8s_disc").init({
            service = { schema = "https", host = "127.0.0.1", port = "$TEST_NGINX_REAL_PORT" },
            client = { token = "$TEST_NGINX_REAL_TOKEN", ca_file = "$TEST_NGINX_REAL_CA" },
            namespace_selector = { equal = "$TEST_NGINX_REAL_NS" },
            shared_size = "1m",
        })
    }
    init_worker_by_lua_block { require("resty.k8s_disc").init_worker() }
--- config
    location = /t {
        content_by_lua_block {
            local t = require("k8s_test")
            local api = require("real_api")
            local ns = "$TEST_NGINX_REAL_NS"
            assert(t.wait_ready(30), "discovery not ready")
            api.apply_endpoints(ns, "scaled", { "10.51.0.1" })
            ngx.say("created: ", t.counts({ ns .. "/scaled:http" }, "1", 30))
            api.apply_endpoints(ns, "scaled", { "10.51.0.1", "10.51.0.2", "10.51.0.3", "10.51.0.4" })
            ngx.say("scaled up: ", t.counts({ ns .. "/scaled:http" }, "4", 30))
            api.apply_endpoints(ns, "scaled", { "10.51.0.4" })
            ngx.say("scaled down: ", t.counts({ ns .. "/scaled:http" }, "1", 30))
            api.delete_endpoints(ns, "scaled")
            ngx.say("deleted: ", t.counts({ ns .. "/scaled:http" }, "0", 30))
            ngx.say("others kept: ", t.count(ns .. "/web:http"))
        }
    }
--- request
GET /t
--- response_body
created: 1
scaled up: 4
scaled down: 1
deleted: 0
others kept: 3
--- no_error_log
[error]



=== TEST 3: a label selector is sent to the server and leaves the other services out
--- http_config
    init_by_lua_block {
        require("resty.k8s_disc").init({
            service = { schema = "https", host = "127.0.0.1", port = "$TEST_NGINX_REAL_PORT" },
            client = { token = "$TEST_NGINX_REAL_TOKEN", ca_file = "$TEST_NGINX_REAL_CA" },
            label_selector = "tier in (back)",
            shared_size = "1m",
        })
    }
    init_worker_by_lua_block { require("resty.k8s_disc").init_worker() }
--- config
    location = /t {
        content_by_lua_block {
            local t = require("k8s_test")
            local ns = "$TEST_NGINX_REAL_NS"
            assert(t.wait_ready(30), "discovery not ready")
            ngx.say("api: ", t.count(ns .. "/api:http"), ", web: ", t.count(ns .. "/web:http"))
            -- An object that comes to match the selector is added by the watch.
            require("real_api").apply_endpoints(ns, "joins", { "10.52.0.1" }, { tier = "back" })
            ngx.say("joined: ", t.counts({ ns .. "/joins:http" }, "1", 30))
            require("real_api").apply_endpoints(ns, "joins", { "10.52.0.1" }, { tier = "front" })
            ngx.say("left: ", t.counts({ ns .. "/joins:http" }, "0", 30))
        }
    }
--- request
GET /t
--- response_body
api: 1, web: 0
joined: 1
left: 0
--- no_error_log
[error]



=== TEST 4: two clusters at once, each with its own selector, names prefixed by the cluster id
--- http_config
    init_by_lua_block {
        require("resty.k8s_disc").init({
            {
                id = "one",
                service = { schema = "https", host = "127.0.0.1", port = "$TEST_NGINX_REAL_PORT" },
                client = { token = "$TEST_NGINX_REAL_TOKEN", ca_file = "$TEST_NGINX_REAL_CA" },
                namespace_selector = { equal = "$TEST_NGINX_REAL_NS" },
                shared_size = "1m",
            },
            {
                id = "two",
                service = { schema = "https", host = "127.0.0.1", port = "$TEST_NGINX_REAL_PORT" },
                client = { token = "$TEST_NGINX_REAL_TOKEN", ca_file = "$TEST_NGINX_REAL_CA" },
                label_selector = "tier=back",
                shared_size = "1m",
            },
        })
    }
    init_worker_by_lua_block { require("resty.k8s_disc").init_worker() }
--- config
    location = /t {
        content_by_lua_block {
            local t = require("k8s_test")
            local ns = "$TEST_NGINX_REAL_NS"
            assert(t.wait_ready(30), "discovery not ready")
            ngx.say(t.counts({ "one/" .. ns .. "/web:http", "one/" .. ns .. "/api:http",
                               "two/" .. ns .. "/web:http", "two/" .. ns .. "/api:http" }, "3 1 0 1", 30))
        }
    }
--- request
GET /t
--- response_body
3 1 0 1
--- no_error_log
[error]



=== TEST 5: a CA that did not sign the server's certificate is explained, and nothing is served
--- http_config
    init_by_lua_block {
        require("resty.k8s_disc").init({
            service = { schema = "https", host = "127.0.0.1", port = "$TEST_NGINX_REAL_PORT" },
            client = { token = "$TEST_NGINX_REAL_TOKEN", ca_file = "$TEST_NGINX_REAL_WRONG_CA" },
            shared_size = "1m",
        })
    }
    init_worker_by_lua_block { require("resty.k8s_disc").init_worker() }
--- config
    location = /t {
        content_by_lua_block {
            local t = require("k8s_test")
            local k8s_disc = require("resty.k8s_disc")
            local e = t.wait_until(function()
                local err = k8s_disc.dump().status[1].last_error
                return err and err:find("unknown issuer", 1, true) and err
            end, 30)
            ngx.say("explained: ", e ~= nil and e:find("set client.ca_file", 1, true) ~= nil)
            ngx.say("ready: ", k8s_disc.ready())
        }
    }
--- request
GET /t
--- response_body
explained: true
ready: false
--- error_log
unknown issuer
