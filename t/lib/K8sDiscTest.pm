package K8sDiscTest;

# The test suite's entry point. A .t file starts with
#
#     use lib 't/lib';
#     use K8sDiscTest;                     # or: use K8sDiscTest 'no_plan';
#
# and then uses the usual Test::Nginx functions (repeat_each, plan, run_tests,
# ...). This module
#
#   * picks the backend: the real Test::Nginx::Socket::Lua when it is on @INC,
#     else the bundled K8sDisc::NginxRunner (env K8S_DISC_TEST_RUNNER=real or
#     bundled forces one) and re-exports its functions into the .t file;
#   * sets the environment both backends read (TEST_NGINX_LOAD_MODULES, ...)
#     and the project's TEST_NGINX_K8S_DISC_* variables for config sections;
#   * prepends lua_package_path/lua_package_cpath for the project to every
#     block's http_config;
#   * runs one fake Kubernetes API server per .t file and exports helpers to
#     talk to it.
#
# Import options (any other arguments, e.g. 'no_plan' or tests => N, go to
# the backend exactly as with "use Test::Nginx::Socket::Lua ..."):
#
#   fake_api => 0                   no fake API server for this file
#   fake_api => [ARGS...]           extra command-line arguments for it
#   fake_api => { args => [...], seed => FILE, bin => PATH }
#
# See t/README.md for the full description.

use strict;
use warnings;

use Cwd ();
use File::Basename ();
use File::Spec ();
use File::Temp ();
use HTTP::Tiny ();
use JSON::PP ();
use POSIX ();
use Time::HiRes ();

our $VERSION = '0.1';

# Absolute repo root: this file is <root>/t/lib/K8sDiscTest.pm.
our $Root = Cwd::abs_path(
    File::Spec->catdir(File::Basename::dirname(__FILE__), '..', '..'));

our $Backend;         # 'real' or 'bundled'
our $BackendClass;    # the Perl package behind it
our $LibDir;          # directory holding libk8s_disc.so

my $MainPid = $$;
my @UserPreprocessors;
my $HookInstalled;
my %Fake;             # pid, port, out, log, args of the running fake API
my %NginxFeatures;    # cache of nginx_features()

my @DEBIAN_MODULES = (    # ndk must be loaded before the lua module
    '/usr/lib/nginx/modules/ndk_http_module.so',
    '/usr/lib/nginx/modules/ngx_http_lua_module.so',
);

# Helpers exported into the .t file (and into the package the backend
# evaluates "--- init" sections in, so they can be called unqualified there).
my @HELPERS = qw(fake_api fake_api_url fake_api_port fake_api_start
                 fake_api_stop apisix_http_config nginx_features skip_unless);

sub import {
    my $class  = shift;
    my $caller = caller;

    # Separate our options from the backend's (plan) arguments.
    my ($fake_opt, @backend_args) = (1);
    while (@_) {
        my $arg = shift;
        if (defined $arg && $arg eq 'fake_api') {
            $fake_opt = shift;
        } else {
            push @backend_args, $arg;
        }
    }

    # The environment must be in place BEFORE the backend is loaded: the real
    # module reads TEST_NGINX_BINARY, TEST_NGINX_LOAD_MODULES etc. at load time.
    _setup_env();
    _load_backend();

    no strict 'refs';
    no warnings 'redefine';
    for my $init_pkg ($caller, _init_package()) {
        for my $h (@HELPERS) {
            *{"${init_pkg}::$h"} = \&{$h} unless defined &{"${init_pkg}::$h"};
        }
    }
    # Our add_block_preprocessor wrapper. Defining it in the caller BEFORE the
    # backend's import matters: Spiffy (which exports for both backends)
    # never overwrites a sub that already exists in the target package.
    *{"${caller}::add_block_preprocessor"} = \&add_block_preprocessor;

    _install_hook();
    _install_signal_handlers();
    _become_subreaper();

    if ($fake_opt && !$Fake{pid}) {
        my %o = ref $fake_opt eq 'HASH'  ? %$fake_opt
              : ref $fake_opt eq 'ARRAY' ? (args => $fake_opt)
              :                            ();
        fake_api_start(%o);
    }

    # Hand over to the backend's import (Test::Base's), exporting into the .t
    # file. "goto" keeps the .t file as the code being compiled, which
    # Test::Base's import relies on (it adds "use strict; use warnings" to it).
    @_ = ($BackendClass, -package => $caller, @backend_args);
    goto &{ $BackendClass->can('import') };
}

# ---------------------------------------------------------------------------
# Environment and backend
# ---------------------------------------------------------------------------

sub _setup_env {
    $LibDir = Cwd::abs_path($ENV{K8S_DISC_LIB_DIR} // "$Root/target/debug")
           // ($ENV{K8S_DISC_LIB_DIR} // "$Root/target/debug");
    $ENV{TEST_NGINX_K8S_DISC_ROOT}    = $Root;
    $ENV{TEST_NGINX_K8S_DISC_LIB_DIR} = $LibDir;

    # Some shells (non-root PATHs) lack /usr/sbin.
    if (!defined $ENV{TEST_NGINX_BINARY} && !_on_path('nginx')
        && -x '/usr/sbin/nginx') {
        $ENV{TEST_NGINX_BINARY} = '/usr/sbin/nginx';
    }

    # Module loading follows the binary, unless the developer has chosen (an
    # empty value means "none"): a build with the lua module compiled in
    # (OpenResty, the agent build) needs no load_module lines and refuses a
    # second copy; Debian's nginx has it as a dynamic module.
    if (!defined $ENV{TEST_NGINX_LOAD_MODULES}) {
        $ENV{TEST_NGINX_LOAD_MODULES} =
            nginx_features()->{static_lua}         ? ''
          : !grep({ !-f } @DEBIAN_MODULES)          ? join(' ', @DEBIAN_MODULES)
          :                                          '';
    }
}

# What the nginx under test can do, from "nginx -V" and the binary itself:
#   static_lua        the http lua module is compiled in
#   stream_lua        the stream subsystem has the Lua module
#   privileged_agent  the core has the privileged agent process patch
#   binary            the path inspected
sub nginx_features {
    return {%NginxFeatures} if %NginxFeatures;
    my $bin = $ENV{TEST_NGINX_BINARY} || 'nginx';
    my $path = $bin =~ m{/} ? $bin
             : (grep { -x } map { "$_/$bin" } split /:/, $ENV{PATH} // '')[0];
    my $v = defined $path ? (`'$path' -V 2>&1` // '') : '';
    my @modules = $v =~ /--add-(?:dynamic-)?module=(\S+)/g;
    my $image = '';
    if (defined $path && open my $fh, '<:raw', $path) {
        local $/;
        $image = <$fh> // '';
    }
    %NginxFeatures = (
        binary     => $path // $bin,
        # Source directory names: lua-nginx-module-* (upstream and Debian),
        # ngx_lua-* and ngx_stream_lua-* (OpenResty's bundle).
        static_lua => (grep({ m{(?:^|/)(?:lua-nginx-module|ngx_lua)[^/]*/?$} }
                            $v =~ /--add-module=(\S+)/g) ? 1 : 0),
        stream_lua => (grep({ m{(?:stream-lua-nginx-module|ngx_stream_lua)} } @modules)
                       ? 1 : 0),
        # The process title the patched core gives the agent (the lua module's
        # own "missing ... patch" message is followed by " patch", not NUL).
        privileged_agent => (index($image, "privileged agent process\0") >= 0 ? 1 : 0),
    );
    return {%NginxFeatures};
}

# skip_unless(FEATURE...) at file level: skips the whole file, saying why,
# unless the nginx under test has every named feature (see nginx_features);
# "!FEATURE" requires its absence.
sub skip_unless {
    my $f = nginx_features();
    my @unmet = grep { /^!(.*)/ ? $f->{$1} : !$f->{$_} } @_;
    return unless @unmet;
    my $why = join ' and ', map { /^!(.*)/ ? "no $1" : $_ } @unmet;
    Test::More::plan(skip_all => "needs an nginx with $why; $f->{binary} does not qualify "
        . "(choose one with TEST_NGINX_BINARY)");
}

sub _on_path {
    my $cmd = shift;
    return scalar grep { length && -x "$_/$cmd" } split /:/, $ENV{PATH} // '';
}

sub _load_backend {
    return if $Backend;
    my $want = $ENV{K8S_DISC_TEST_RUNNER} // '';
    die "K8S_DISC_TEST_RUNNER must be 'real' or 'bundled', not '$want'\n"
        if $want ne '' && $want ne 'real' && $want ne 'bundled';

    my $real_file = 'Test/Nginx/Socket/Lua.pm';
    my $have_real = grep { !ref && -f "$_/$real_file" } @INC;

    if ($want eq 'real' || ($want eq '' && $have_real)) {
        # If the real module is installed but broken, say so instead of
        # silently falling back to the bundled runner.
        eval { require Test::Nginx::Socket::Lua; 1 } or die
            "K8sDiscTest: cannot load Test::Nginx::Socket::Lua"
            . ($have_real ? '' : ' (not on @INC; add its lib/ to PERL5LIB, '
                               . 'or set K8S_DISC_TEST_RUNNER=bundled)')
            . ": $@";
        ($Backend, $BackendClass) = ('real', 'Test::Nginx::Socket::Lua');
    } else {
        require K8sDisc::NginxRunner;
        ($Backend, $BackendClass) = ('bundled', 'K8sDisc::NginxRunner');
    }
}

# Where each backend evaluates "--- init" code (the real module evals it
# inside Test::Nginx::Util::run_test).
sub _init_package {
    return $Backend eq 'real' ? 'Test::Nginx::Util' : 'K8sDisc::NginxRunner';
}

# ---------------------------------------------------------------------------
# Block preprocessing
# ---------------------------------------------------------------------------

# Wrapper exported as add_block_preprocessor(): the .t file's preprocessors
# are kept here and run by our single hook, most recently added first (the
# order of the real module), followed by the project's own http_config
# additions. So a .t file can neither clobber nor reorder them.
sub add_block_preprocessor(&) {
    my $code = shift;
    die "add_block_preprocessor needs a code reference\n"
        unless ref $code eq 'CODE';
    unshift @UserPreprocessors, $code;
}

sub _install_hook {
    return if $HookInstalled++;
    my $add = $BackendClass->can('add_block_preprocessor')
        or die "backend $BackendClass has no add_block_preprocessor\n";
    $add->(sub {
        my $block = shift;
        $_->($block) for @UserPreprocessors;
        _add_lua_paths($block);
    });
}

# Prepend the project's Lua search paths, unless the block sets its own
# (nginx refuses a duplicate lua_package_path).
sub _add_lua_paths {
    my $block = shift;
    my $http = $block->http_config // '';
    return if ref $http;
    my $add = '';
    $add .= qq{lua_package_path "$Root/lua/?.lua;$Root/lua/?/init.lua;}
          . qq{$Root/t/lua/?.lua;;";\n}
        unless $http =~ /^\s*lua_package_path\b/m;
    $add .= qq{lua_package_cpath "$LibDir/?.so;;";\n}
        unless $http =~ /^\s*lua_package_cpath\b/m;
    $block->set_value(http_config => $add . $http) if $add ne '';
}

# ---------------------------------------------------------------------------
# Fake Kubernetes API server
# ---------------------------------------------------------------------------

# Start the fake API server (stopping a running one first) and return its
# port. Options:
#   args => [...]   extra arguments after "--listen 127.0.0.1:0"
#   seed => FILE    JSON array of {"method", "path", "body"} requests replayed
#                   through the server's own API once it is up; each must
#                   answer 2xx
#   bin  => PATH    binary (default: env K8S_DISC_FAKE_API, else
#                   <root>/target/debug/k8s-fake-apiserver)
sub fake_api_start {
    my %o = @_;
    fake_api_stop() if $Fake{pid};

    my $bin = $o{bin} // $ENV{K8S_DISC_FAKE_API}
              // "$Root/target/debug/k8s-fake-apiserver";
    die "K8sDiscTest: fake API server $bin is missing or not executable; "
        . "build it (cargo build -p k8s-fake-apiserver), set "
        . "K8S_DISC_FAKE_API, or say 'use K8sDiscTest fake_api => 0'\n"
        unless -f $bin && -x _;

    my @cmd = ($bin, '--listen', '127.0.0.1:0', @{ $o{args} || [] });
    # stdout and stderr go to files, not pipes: nobody has to keep reading
    # them, and a chatty server can never block on a full pipe.
    my $tmp = File::Spec->tmpdir;
    my $out = "$tmp/k8s-fake-apiserver-$$.out";
    my $log = "$tmp/k8s-fake-apiserver-$$.log";
    unlink $out, $log;

    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        # With TEST_NGINX_NO_CLEAN the server outlives the test, for poking
        # at nginx afterwards; otherwise it must die with the test.
        _die_with_parent() unless $ENV{TEST_NGINX_NO_CLEAN};
        open STDIN,  '<', '/dev/null';
        open STDOUT, '>', $out;
        open STDERR, '>', $log;
        { no warnings 'exec'; exec { $cmd[0] } @cmd; }
        POSIX::_exit(127);    # never run the parent's END blocks here
    }
    %Fake = (pid => $pid, out => $out, log => $log, cmd => "@cmd");

    # Contract: the first stdout line is "listening on 127.0.0.1:PORT".
    my $deadline = Time::HiRes::time() + ($ENV{K8S_DISC_FAKE_API_TIMEOUT} || 15);
    my $port;
    while (!$port) {
        if (open my $fh, '<', $out) {
            my $first = <$fh>;
            if (defined $first && $first =~ /\n\z/) {
                ($port) = $first =~ /^listening on \S+:(\d+)\s*$/
                    or _fake_fail("unexpected first line \"$first\"");
            }
        }
        last if $port;
        if (waitpid($pid, POSIX::WNOHANG()) == $pid) {
            my $status = $?;
            delete $Fake{pid};
            _fake_fail("exited with status " . ($status >> 8)
                       . " before listening");
        }
        _fake_fail("no \"listening on\" line within the time limit")
            if Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.02);
    }

    $Fake{port} = $port;
    $ENV{TEST_NGINX_FAKE_API_PORT} = $port;
    _fake_seed($o{seed}) if defined $o{seed};
    return $port;
}

# prctl(2), Linux only; a no-op (returning false) where unavailable.
sub _prctl {
    my ($option, $arg) = @_;
    return 0 unless $^O eq 'linux';
    my $nr = eval { package K8sDiscTest::Sys; require 'syscall.ph'; &SYS_prctl() };
    return 0 unless $nr;
    return syscall($nr, $option, $arg) == 0;
}

# Make the kernel send SIGTERM to the child when the test process dies, even
# by SIGKILL, so a killed test never leaves a fake server behind.
sub _die_with_parent { _prctl(1, 15) }    # PR_SET_PDEATHSIG, SIGTERM

sub _fake_fail {
    my $why = shift;
    my $log = $Fake{log} ? _tail($Fake{log}, 20) : '';
    fake_api_stop();
    die "K8sDiscTest: fake API server ($Fake{cmd}): $why\n"
        . ($log ne '' ? "---- its stderr ----\n$log" : '');
}

sub _fake_seed {
    my $file = shift;
    open my $in, '<', $file or die "K8sDiscTest: seed file $file: $!\n";
    my $reqs = JSON::PP->new->decode(do { local $/; <$in> });
    die "K8sDiscTest: seed file $file must hold a JSON array\n"
        unless ref $reqs eq 'ARRAY';
    for my $r (@$reqs) {
        my ($status, $body) = fake_api($r->{method}, $r->{path}, $r->{body});
        die "K8sDiscTest: seed $r->{method} $r->{path} -> $status: $body\n"
            unless $status =~ /^2/;
    }
}

# Stop the fake API server: TERM, then KILL if it is still there after 5 s.
sub fake_api_stop {
    my $pid = delete $Fake{pid} or return;
    kill 'TERM', $pid;
    my $deadline = Time::HiRes::time() + 5;
    while (waitpid($pid, POSIX::WNOHANG()) == 0) {
        if (Time::HiRes::time() > $deadline) {
            kill 'KILL', $pid;
            waitpid $pid, 0;
            last;
        }
        Time::HiRes::sleep(0.02);
    }
    $Fake{was_up} = 1 if $Fake{port};
    delete $Fake{port};
    delete $ENV{TEST_NGINX_FAKE_API_PORT};
}

sub fake_api_port { $Fake{port} }

# apisix_http_config(LUA_CONF) -> an http_config that loads the APISIX adapter the way APISIX does: the
# discovery config (a Lua table literal) goes into the config_local stand-in, then the adapter is required in
# init_by_lua (in the master) and its init_worker() runs in every worker.
sub apisix_http_config {
    my ($conf) = @_;
    return <<_EOC_;
    init_by_lua_block {
        require("apisix.core.config_local").set_discovery("kubernetes", $conf)
        require("apisix.discovery.kubernetes")
    }
    init_worker_by_lua_block {
        require("apisix.discovery.kubernetes").init_worker()
    }
_EOC_
}

sub fake_api_url {
    die "K8sDiscTest: the fake API server is not running\n" unless $Fake{port};
    return "http://127.0.0.1:$Fake{port}";
}

# fake_api(METHOD, PATH [, BODY [, \%HEADERS]]) -> (status, body)
# BODY is a JSON string or a Perl structure (encoded as JSON). In scalar
# context only the status is returned. Connection errors give status 599
# (HTTP::Tiny's convention) with the error text as body.
sub fake_api {
    my ($method, $path, $body, $headers) = @_;
    my %opt = (headers => { Accept => 'application/json', %{ $headers || {} } });
    if (defined $body) {
        $opt{content} = ref $body ? JSON::PP->new->canonical->encode($body) : $body;
        $opt{headers}{'Content-Type'} //= 'application/json';
    }
    # Explicit undef proxies: a proxy from the environment must never be used
    # to reach 127.0.0.1.
    my $http = HTTP::Tiny->new(timeout => 10, proxy => undef,
                               http_proxy => undef, https_proxy => undef);
    my $res = $http->request(uc $method, fake_api_url() . $path, \%opt);
    return wantarray ? ($res->{status}, $res->{content}) : $res->{status};
}

sub _tail {
    my ($file, $n) = @_;
    open my $in, '<', $file or return '';
    my @lines = <$in>;
    @lines = @lines[-$n .. -1] if @lines > $n;
    return join '', @lines;
}

# ---------------------------------------------------------------------------
# Cleanup
# ---------------------------------------------------------------------------

# Perl runs END blocks on normal exit and on die, but not when killed by a
# signal. Turn INT/TERM/HUP into an exit so the fake server and nginx are
# stopped then too (unless the .t file installed its own handlers).
sub _install_signal_handlers {
    for my $sig (qw(INT TERM HUP PIPE)) {
        next if defined $SIG{$sig} && $SIG{$sig} ne '' && $SIG{$sig} ne 'DEFAULT';
        $SIG{$sig} = sub {
            print STDERR "# K8sDiscTest: caught SIG$sig, cleaning up\n";
            exit 128 + { INT => 2, TERM => 15, HUP => 1, PIPE => 13 }->{$sig};
        };
    }
}

# nginx daemonizes: its processes are orphans, adopted by PID 1. Where PID 1
# does not reap orphans (some containers), every stopped nginx stays a zombie,
# and a zombie still "exists" for kill(0) - which is how the real Test::Nginx
# waits for nginx to go. As a child subreaper, the test process adopts them
# instead, and both backends reap them with waitpid() while waiting.
sub _become_subreaper { _prctl(36, 1) }    # PR_SET_CHILD_SUBREAPER

END {
    if ($$ == $MainPid && $Fake{pid} && $ENV{TEST_NGINX_NO_CLEAN}) {
        print STDERR "# TEST_NGINX_NO_CLEAN: fake API server left running: "
            . "pid $Fake{pid}, port $Fake{port}, stderr in $Fake{log}\n";
    } elsif ($$ == $MainPid && $Fake{out}) {
        local $?;    # keep the test's exit status
        # On failure keep the server's stderr and show its tail (unless it
        # never started: then the error message already showed it).
        my $failed = ($Fake{port} || $Fake{was_up}) && eval { !Test::More->builder->is_passing };
        if ($failed && -s $Fake{log}) {
            print STDERR "# ---- fake API server stderr ($Fake{log}, last 20 lines) ----\n",
                map { "# $_\n" } split /\n/, _tail($Fake{log}, 20);
        }
        fake_api_stop();
        unlink $Fake{out};
        unlink $Fake{log} unless $failed;
    }
}

1;
