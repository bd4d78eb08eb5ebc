# Packaging: the Lua module refuses a library of another version and names what it tried when there is none;
# the tree `make install` lays out works on its own (scripts/test.sh installs one and points
# K8S_DISC_INSTALLED_PREFIX at it; without it, that block is skipped); and the rockspec, installed with
# `luarocks make` into a temporary tree (with the library already built, through K8S_DISC_LIB), serves from that
# tree alone (skipped, saying so, where luarocks is not installed).

use lib 't/lib';
use K8sDiscTest;
use File::Copy ();
use File::Temp ();

master_on();
workers(1);
repeat_each(1);
no_shuffle();
log_level('info');

fake_api('POST', '/api/v1/namespaces/ns-a/endpoints', {
    metadata => { name => 'web' },
    subsets  => [{ addresses => [{ ip => '10.0.0.1' }], ports => [{ name => 'http', port => 8080 }] }],
});

# A copy of the library that reports another version: the version string patched in place (same length).
my $tmp = File::Temp::tempdir(CLEANUP => 1);
my $lib = "$K8sDiscTest::LibDir/libk8s_disc.so";
open my $in, '<:raw', $lib or die "$lib: $!";
my $image = do { local $/; <$in> };
close $in;
my $cargo = do { open my $fh, '<', "$K8sDiscTest::Root/Cargo.toml" or die $!; local $/; <$fh> };
my ($version) = $cargo =~ /^version = "([^"]+)"/m or die "no version in Cargo.toml";
my $other = join '.', map { $_ == 0 ? 9 : $_ - 1 } split /\./, $version;    # same length, other MAJOR.MINOR
my $n = ($image =~ s/\Q$version\E\0/$other\0/g) or die "version string $version not found in $lib";
open my $out, '>:raw', "$tmp/libk8s_disc.so" or die $!;
print $out $image;
close $out;
$ENV{TEST_NGINX_OTHER_VERSION_LIB} = "$tmp/libk8s_disc.so";
$ENV{TEST_NGINX_OTHER_VERSION} = $other;
$ENV{TEST_NGINX_VERSION} = $version;
$ENV{TEST_NGINX_INSTALLED_PREFIX} = $ENV{K8S_DISC_INSTALLED_PREFIX} // '';

# The rock, installed into a temporary tree from this checkout.
$ENV{TEST_NGINX_ROCK_TREE} = '';
if (system('sh', '-c', 'command -v luarocks >/dev/null') != 0) {
    print STDERR "# SKIP rockspec: luarocks is not installed (scripts/setup.sh installs it); the rock is NOT tested\n";
} else {
    my ($rockspec) = glob "$K8sDiscTest::Root/rockspec/*.rockspec" or die "no rockspec in $K8sDiscTest::Root/rockspec";
    my $tree = "$tmp/rock-tree";
    local $ENV{K8S_DISC_LIB} = $lib;
    my $out = qx{cd '$K8sDiscTest::Root' && luarocks make --tree '$tree' '$rockspec' 2>&1};
    die "luarocks make --tree $tree $rockspec failed:\n$out" if $? != 0;
    $ENV{TEST_NGINX_ROCK_TREE} = $tree;
}

plan tests => 10;

run_tests();

__DATA__

=== TEST 1: a library of another MAJOR.MINOR is refused at start, naming its path and both versions
--- http_config
    init_by_lua_block {
        require("resty.k8s_disc").init({ service = { schema = "http", host = "127.0.0.1", port = "1" },
                                         client = { token = "t" }, shared_size = "1m" },
                                       { library = "$TEST_NGINX_OTHER_VERSION_LIB" })
    }
--- config
    location = /t { return 200; }
--- must_die
--- error_log eval
qr/k8s-disc: \Q$ENV{TEST_NGINX_OTHER_VERSION_LIB}\E is version \Q$ENV{TEST_NGINX_OTHER_VERSION}\E but the Lua module is \Q$ENV{TEST_NGINX_VERSION}\E/



=== TEST 2: no library on lua_package_cpath: a clear error naming every path tried
--- http_config
    lua_package_cpath "/nonexistent/k8s-disc/?.so;;";
    init_by_lua_block {
        require("resty.k8s_disc").init({ service = { schema = "http", host = "127.0.0.1", port = "1" },
                                         client = { token = "t" }, shared_size = "1m" })
    }
--- config
    location = /t { return 200; }
--- must_die
--- error_log
k8s-disc: libk8s_disc.so not found; tried: /nonexistent/k8s-disc/libk8s_disc.so, /nonexistent/k8s-disc/k8s_disc.so, 



=== TEST 3: the tree `make install` lays out serves on its own (library by its soname link, Lua from lua/)
--- skip_eval: 3: ($ENV{K8S_DISC_INSTALLED_PREFIX} // '') eq ''
--- http_config
    lua_package_path "$TEST_NGINX_INSTALLED_PREFIX/lua/?.lua;$TEST_NGINX_INSTALLED_PREFIX/lua/?/init.lua;$TEST_NGINX_K8S_DISC_ROOT/t/lua/?.lua;;";
    lua_package_cpath "$TEST_NGINX_INSTALLED_PREFIX/lib/?.so;;";
    init_by_lua_block {
        require("resty.k8s_disc").init({ service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" },
                                         client = { token = "t" }, shared_size = "1m" })
    }
    init_worker_by_lua_block {
        require("resty.k8s_disc").init_worker()
    }
--- config
    location = /t {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            assert(require("k8s_test").wait_ready(5))
            ngx.say("library: ", k8s_disc.library_path())
            ngx.say("nodes: ", #k8s_disc.nodes("ns-a/web:http"))
        }
    }
--- request
GET /t
--- response_body eval
"library: $ENV{TEST_NGINX_INSTALLED_PREFIX}/lib/libk8s_disc.so\nnodes: 1\n"
--- no_error_log
[error]



=== TEST 4: the rock installed by luarocks serves from its tree alone (library as lib/lua/5.1/k8s_disc.so)
--- skip_eval: 3: $ENV{TEST_NGINX_ROCK_TREE} eq ''
--- http_config
    lua_package_path "$TEST_NGINX_ROCK_TREE/share/lua/5.1/?.lua;$TEST_NGINX_ROCK_TREE/share/lua/5.1/?/init.lua;$TEST_NGINX_K8S_DISC_ROOT/t/lua/?.lua;;";
    lua_package_cpath "$TEST_NGINX_ROCK_TREE/lib/lua/5.1/?.so;;";
    init_by_lua_block {
        require("resty.k8s_disc").init({ service = { schema = "http", host = "127.0.0.1", port = "$TEST_NGINX_FAKE_API_PORT" },
                                         client = { token = "t" }, shared_size = "1m" })
    }
    init_worker_by_lua_block {
        require("resty.k8s_disc").init_worker()
    }
--- config
    location = /t {
        content_by_lua_block {
            local k8s_disc = require("resty.k8s_disc")
            assert(require("k8s_test").wait_ready(5))
            ngx.say("module: ", package.searchpath("resty.k8s_disc", package.path))
            ngx.say("library: ", k8s_disc.library_path())
            local found = k8s_disc.lookup("ns-a/web:http")
            ngx.say("lookup: ", found.found, " ", found.nodes[1].host, ":", found.nodes[1].port)
            ngx.say("plugin: ", require("apisix.plugins.k8s-disc-metrics").api()[1].uri)
        }
    }
--- request
GET /t
--- response_body eval
"module: $ENV{TEST_NGINX_ROCK_TREE}/share/lua/5.1/resty/k8s_disc.lua
library: $ENV{TEST_NGINX_ROCK_TREE}/lib/lua/5.1/k8s_disc.so
lookup: true 10.0.0.1:8080
plugin: /apisix/k8s-disc/metrics
"
--- no_error_log
[error]
