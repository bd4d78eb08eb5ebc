# Self-test of the test harness (t/lib/K8sDiscTest.pm and the backend it
# picks). Needs only nginx with the lua module: no libk8s_disc.so and no fake
# API server. Runs under the real Test::Nginx::Socket::Lua and under the
# bundled runner alike.

use lib 't/lib';
use K8sDiscTest fake_api => 0;    # this file needs no fake API server

master_on();
workers(2);
repeat_each(2);
no_shuffle();
log_level('info');

# Used by TEST 9: any $TEST_NGINX_* variable is substituted in config sections.
$ENV{TEST_NGINX_HARNESS_GREETING} = 'hello from the environment';

# Tests per block and repeat, as both runners count them: one for the status
# code (unless --- ignore_response), one for the body check, one per
# response_headers line, and per request one per error_log / no_error_log
# pattern and one for grep_error_log_out.
plan tests => repeat_each() * (
      3     # TEST 1: status, body, no_error_log
    + 2     # TEST 2: status, body
    + 6     # TEST 3: status, body, 2 error_log, 2 no_error_log
    + 3     # TEST 4: status, body, grep_error_log_out
    + 6     # TEST 5: 2 requests x (status, body, no_error_log)
    + 2     # TEST 6: status, body
    + 2     # TEST 7: status, body
    + 2     # TEST 8: must_die, error_log
    + 2     # TEST 9: status, body
    + 5     # TEST 10: status, 3 headers, body
    + 1     # TEST 11: error_log (response ignored)
    + 2     # TEST 12: 2 skipped
    + 2     # TEST 13: status, body
);

run_tests();

__DATA__

=== TEST 1: response_body and no_error_log
--- config
    location = /t {
        content_by_lua_block {
            ngx.say("hello, harness")
        }
    }
--- request
GET /t
--- response_body
hello, harness
--- no_error_log
[error]



=== TEST 2: error_code and inline response_body_like
--- config
    location = /t {
        content_by_lua_block {
            ngx.status = 403
            ngx.say("denied: code 4711")
            ngx.exit(403)
        }
    }
--- request
GET /t
--- error_code: 403
--- response_body_like: ^denied: code \d+$



=== TEST 3: error_log with an eval array (substring and regex)
--- config
    location = /t {
        content_by_lua_block {
            ngx.log(ngx.WARN, "harness marker: ", 42)
            ngx.say("ok")
        }
    }
--- request
GET /t
--- response_body
ok
--- error_log eval
["harness marker: 42", qr/marker: \d+, client: /]
--- no_error_log
[error]
[alert]



=== TEST 4: grep_error_log and grep_error_log_out (per repeat)
--- config
    location = /t {
        content_by_lua_block {
            for i = 1, 3 do
                ngx.log(ngx.WARN, "tick ", i)
            end
            ngx.say("done")
        }
    }
--- request
GET /t
--- response_body
done
--- grep_error_log eval
qr/tick \d/
--- grep_error_log_out
tick 1
tick 2
tick 3



=== TEST 5: request eval array, one connection per request
--- http_config
    lua_shared_dict harness 1m;
--- config
    location = /store {
        content_by_lua_block {
            ngx.req.read_body()
            local body = ngx.req.get_body_data()
            ngx.shared.harness:set("v", body)
            ngx.status = 201
            ngx.say("stored ", body)
        }
    }
    location = /load {
        content_by_lua_block {
            ngx.say("loaded ", ngx.shared.harness:get("v"))
        }
    }
--- request eval
["POST /store\nabc", "GET /load"]
--- error_code eval
[201, 200]
--- response_body eval
["stored abc\n", "loaded abc\n"]
--- no_error_log
[error]



=== TEST 6: master_on() and workers(2)
--- config
    location = /t {
        content_by_lua_block {
            local process = require "ngx.process"
            ngx.say(ngx.worker.count(), " workers, this is a ", process.type())
        }
    }
--- request
GET /t
--- response_body
2 workers, this is a worker



=== TEST 7: init runs after nginx starts, once for all repeats
--- init
# html/ is recreated when nginx is started for this block, so this file can
# only be there if init runs after that. Appending shows it runs once.
open my $fh, '>>', html_dir() . '/from-init.txt' or die "open: $!";
print $fh "written by init\n";
close $fh;
--- config
    location = /t {
        return 200;
    }
--- request
GET /from-init.txt
--- response_body
written by init



=== TEST 8: must_die when init_by_lua fails
--- http_config
    init_by_lua_block {
        error("harness boom")
    }
--- config
    location = /t {
        return 200;
    }
--- must_die
--- error_log
harness boom



=== TEST 9: $TEST_NGINX_* substitution and the shim's lua_package_path
--- config
    location = /t {
        set $greeting "$TEST_NGINX_HARNESS_GREETING";
        content_by_lua_block {
            local fake = require "fake_api"     -- from t/lua
            ngx.say(ngx.var.greeting)
            ngx.say(type(fake.request), " ", type(fake.stats))
            ngx.say(package.path:find("$TEST_NGINX_K8S_DISC_ROOT/t/lua/?.lua",
                                      1, true) ~= nil)
        }
    }
--- request
GET /t
--- response_body
hello from the environment
function function
true



=== TEST 10: more_headers and response_headers
--- config
    location = /t {
        content_by_lua_block {
            ngx.header["X-Echo"] = ngx.var.http_x_foo
            ngx.say("ok")
        }
    }
--- request
GET /t
--- more_headers
X-Foo: bar
--- response_headers
X-Echo: bar
!X-Absent
Content-Type: text/plain
--- response_body
ok



=== TEST 11: timeout with abort, and wait before checking the log
--- config
    location = /t {
        content_by_lua_block {
            ngx.sleep(0.5)
            ngx.log(ngx.WARN, "slept and done")
            ngx.say("late")
        }
    }
--- request
GET /t
--- timeout: 0.2
--- abort
--- ignore_response
--- wait: 0.8
--- error_log
slept and done



=== TEST 12: skip_eval skips the given number of tests
--- config
    location = /t {
        return 200;
    }
--- request
GET /t
--- response_body
--- skip_eval: 2: 1



=== TEST 13: POST body gets a Content-Length
--- config
    location = /echo {
        content_by_lua_block {
            ngx.req.read_body()
            ngx.say("len=", ngx.var.http_content_length,
                    " body=", ngx.req.get_body_data())
        }
    }
--- request
POST /echo
hello body
--- response_body
len=10 body=hello body
