# Fixture for t/001-harness-failures.t: every block but the first one is
# WRONG on purpose, so the harness must report a failure for it. Not a .t
# file, so "prove -r t/" does not run it directly.

use lib 't/lib';
use K8sDiscTest 'no_plan', fake_api => 0;

no_shuffle();
repeat_each(1);
log_level('info');

run_tests();

__DATA__

=== TEST 1: control block, passes
--- config
    location = /t {
        content_by_lua_block {
            ngx.log(ngx.WARN, "control marker")
            ngx.say("fine")
        }
    }
--- request
GET /t
--- response_body
fine
--- error_log
control marker
--- no_error_log
[error]



=== TEST 2: wrong response_body
--- config
    location = /t {
        content_by_lua_block { ngx.say("actual body") }
    }
--- request
GET /t
--- response_body
expected body



=== TEST 3: wrong error_code
--- config
    location = /t {
        return 200 "ok\n";
    }
--- request
GET /t
--- error_code: 404



=== TEST 4: error_log pattern that is never logged
--- config
    location = /t {
        return 200 "ok\n";
    }
--- request
GET /t
--- error_log
this line is never logged



=== TEST 5: no_error_log pattern that is logged
--- config
    location = /t {
        content_by_lua_block {
            ngx.log(ngx.ERR, "forbidden marker")
            ngx.say("ok")
        }
    }
--- request
GET /t
--- no_error_log
forbidden marker



=== TEST 6: grep_error_log_out mismatch
--- config
    location = /t {
        content_by_lua_block {
            ngx.log(ngx.WARN, "tick 1")
            ngx.say("ok")
        }
    }
--- request
GET /t
--- grep_error_log eval
qr/tick \d/
--- grep_error_log_out
tick 2



=== TEST 7: client timeout without abort
--- config
    location = /t {
        content_by_lua_block {
            ngx.sleep(1)
            ngx.say("late")
        }
    }
--- request
GET /t
--- timeout: 0.2
--- ignore_response



=== TEST 8: must_die with a valid config
--- config
    location = /t {
        return 200;
    }
--- must_die



=== TEST 9: wrong response header
--- config
    location = /t {
        add_header X-Got actual;
        return 200 "ok\n";
    }
--- request
GET /t
--- response_headers
X-Got: expected



=== TEST 10: response_body_like mismatch
--- config
    location = /t {
        return 200 "abc\n";
    }
--- request
GET /t
--- response_body_like: ^\d+$
