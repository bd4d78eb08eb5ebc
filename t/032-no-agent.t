# The process model on an nginx without the privileged agent (Debian's stock nginx): the watcher runs in worker 0,
# and asking for the agent fails at start. Skipped, saying why, on an nginx with the agent (t/030-agent.t).

use lib 't/lib';
use K8sDiscTest;

skip_unless('!privileged_agent');

master_on();
workers(2);
repeat_each(1);
no_shuffle();
log_level('info');

fake_api('POST', '/api/v1/namespaces/ns-a/endpoints', {
    metadata => { name => 'web' },
    subsets  => [{ addresses => [{ ip => '10.0.0.1' }], ports => [{ name => 'http', port => 8080 }] }],
});

sub main::http_config {
    my ($watcher) = @_;
    return <<"_EOC_";
    init_by_lua_block {
        require("resty.k8s_disc").init({
            service = { schema = "http", host = "127.0.0.1", port = "\$TEST_NGINX_FAKE_API_PORT" },
            client = { token = "t" },
            shared_size = "3m",
        }, { watcher = "$watcher" })
    }
    init_worker_by_lua_block {
        local k8s_disc = require("resty.k8s_disc")
        if k8s_disc.init_worker() then
            ngx.log(ngx.INFO, "watcher process is worker ", ngx.worker.id())
        end
    }
_EOC_
}

plan tests => 6;

run_tests();

__DATA__

=== TEST 1: watcher = "auto" without an agent: worker 0 runs the one watcher thread and writes the region
--- http_config eval: main::http_config('auto')
--- config
    location = /t {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            local t = require("k8s_test")
            assert(t.wait_ready(5))
            local procs = t.nginx_processes()
            local watcher
            for _, p in ipairs(procs) do
                if p.threads["k8s-disc"] then watcher = p.pid end
            end
            ngx.say("watcher threads: ", t.watcher_threads(procs))
            ngx.say("writer is that worker: ", k8s_disc.dump().status[1].writer_pid == watcher)
            ngx.say("nodes: ", t.fmt_nodes(k8s_disc.nodes("ns-a/web:http")))
        }
    }
--- request
GET /t
--- response_body
watcher threads: worker process=1
writer is that worker: true
nodes: 10.0.0.1:8080:50
--- grep_error_log eval
qr/watcher process is worker \d+/
--- grep_error_log_out
watcher process is worker 0
--- no_error_log
[error]



=== TEST 2: watcher = "agent" without an agent fails at start, saying why
--- http_config eval: main::http_config('agent')
--- config
    location = /t { return 200; }
--- must_die
--- error_log
k8s-disc: watcher = agent but no privileged agent: missing privileged agent process patch in the nginx core
