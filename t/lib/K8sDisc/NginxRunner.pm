package K8sDisc::NginxRunner;

# The project's bundled runner for Test::Nginx-format .t files.
#
# It is used when the real Test::Nginx::Socket::Lua is not installed (CPAN is
# unreachable on the project's machines). It is written from the DOCUMENTED
# behaviour of the real module, so that a .t file passes or fails the same way
# under both. Where the real module has a notable quirk that a .t file could
# depend on, the quirk is mimicked and a comment says so.
#
# Normally you do not use this module directly: t/lib/K8sDiscTest.pm picks the
# backend and re-exports its functions. See t/README.md.
#
# The package name is deliberately not Test::Nginx::*: it must never shadow the
# real module for people who have it.

use strict;
use warnings;

# "-base" (lowercase) makes us a Test::Base subclass WITHOUT Spiffy's source
# filter, so the subs below are ordinary Perl subs. Test::Base gives us the
# block parser (=== / ---, filters like eval/chomp, ONLY/SKIP/LAST) and exports
# blocks(), plan(), is(), like() etc. to the .t file through Spiffy.
use Test::Base -base;

use Config ();
use Cwd ();
use File::Path qw(make_path remove_tree);
use File::Spec ();
use IO::Select ();
use IO::Socket::INET ();
use List::Util qw(shuffle);
use POSIX qw(:sys_wait_h);
use Scalar::Util qw(looks_like_number);
use Test::LongString ();
use Time::HiRes qw(sleep time);

our @EXPORT = qw(
    run_tests run_test
    plan repeat_each master_on master_off master_process_enabled workers
    worker_connections log_level no_shuffle no_long_string no_root_location
    check_accum_error_log add_block_preprocessor add_cleanup_handler
    add_response_body_check env_to_nginx config_preamble bail_out is_str
    server_name server_addr server_root html_dir server_port
    server_port_for_client timeout
);

# ---------------------------------------------------------------------------
# Settings. Defaults and environment variables are those of the real module.
# ---------------------------------------------------------------------------

our $MainPid = $$;    # forked children must never run our END block

our $NginxBinary       = $ENV{TEST_NGINX_BINARY} || 'nginx';
our $LoadModules       = $ENV{TEST_NGINX_LOAD_MODULES};
our $Workers           = 1;
our $WorkerConnections = 64;
our $LogLevel          = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcess     = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $RepeatEach        = 1;
our $NoShuffle         = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $NoLongString      = 0;
our $NoRootLocation    = 0;
our $CheckAccumErrLog  = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our $Timeout           = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $Sleep             = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $ServerAddr        = '127.0.0.1';
our $ServerName        = 'localhost';
our $ConfigPreamble    = '';
our $WorkerUser        = $ENV{TEST_NGINX_WORKER_USER};
our $Randomize         = $ENV{TEST_NGINX_RANDOMIZE};
our $Verbose           = $ENV{TEST_NGINX_VERBOSE};
our $ServerPort = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
our $ServerPortForClient = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;

if (defined $WorkerUser && $WorkerUser !~ /^\w+(?:\s+\w+)?$/) {
    die "Bad value in the env TEST_NGINX_WORKER_USER: $WorkerUser\n";
}

if ($Randomize) {
    # Like the real module: a free random port and a per-port server root, so
    # several .t files can run in parallel (prove -j).
    $ServerPort = _free_port({}) or die "cannot find a free port\n";
    $ServerPortForClient = $ServerPort;
}

our $ServRoot = $Randomize
    ? File::Spec->rel2abs("t/servroot_$ServerPort")
    : ($ENV{TEST_NGINX_SERVROOT} || File::Spec->rel2abs('t/servroot'));
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;    # the real module exports it too

our $LogDir     = "$ServRoot/logs";
our $ErrLogFile = "$LogDir/error.log";
our $AccLogFile = "$LogDir/access.log";
our $HtmlDir    = "$ServRoot/html";
our $ConfDir    = "$ServRoot/conf";
our $ConfFile   = "$ConfDir/nginx.conf";
our $PidFile    = "$LogDir/nginx.pid";
# nginx's own stderr while it starts (see _start_nginx). It lives outside the
# server root so that the real module's cleanup (which rmdir's the root) is
# never disturbed by a file it does not know.
our $StartupStderrFile = "$ServRoot.stderr";

our @BlockPreprocessors;
our @CleanupHandlers;
our @ResponseBodyChecks;
our @EnvToNginx;

my $PrevConfig;        # config of the block that started the running nginx
my $ErrLogFilePos = 0; # error.log offset already checked (per request/repeat)
my $NginxVersion;      # canonical number, e.g. 1.022001
my $SupportsDashE;     # nginx -e (1.19.5+)

# Real Test::Nginx sections the bundled runner does not implement. A block
# using one fails loudly instead of silently passing without the check.
my @UNSUPPORTED_SECTIONS = qw(
    shutdown_error_log no_shutdown_error_log stap stap_out stap_out_like
    stap_out_unlike http2 http3 udp_listen udp_reply udp_query tcp_listen
    tcp_reply tcp_query tcp_query_len pipelined_requests response_body_filters
    curl todo skip_nginx2 skip_openssl skip_slave reload_fails http09
    server_addr_for_client request_eval response_body_eval
);

# ---------------------------------------------------------------------------
# Exported configuration functions (all must be called before run_tests()).
# ---------------------------------------------------------------------------

sub repeat_each { $RepeatEach = shift if @_; return $RepeatEach }
sub workers     { $Workers = shift if @_; return $Workers }
sub worker_connections { $WorkerConnections = shift if @_; return $WorkerConnections }
sub log_level   { $LogLevel = shift if @_; return $LogLevel }
sub timeout     { $Timeout = shift if @_; return $Timeout }
sub master_on   { $MasterProcess = 'on' }
sub master_off  { $MasterProcess = 'off' }
sub master_process_enabled {
    $MasterProcess = $_[0] ? 'on' : 'off' if @_;
    return $MasterProcess;
}
sub no_shuffle       { $NoShuffle = 1 }
sub no_long_string   { $NoLongString = 1 }
sub no_root_location { $NoRootLocation = 1 }
sub check_accum_error_log { $CheckAccumErrLog = 1 }
sub config_preamble  { $ConfigPreamble = shift }
sub server_name      { $ServerName = shift if @_; return $ServerName }
sub server_addr      { $ServerAddr = shift if @_; return $ServerAddr }
sub server_port      { $ServerPort = shift if @_; return $ServerPort }
sub server_port_for_client {
    $ServerPortForClient = shift if @_;
    return $ServerPortForClient;
}
sub server_root { $ServRoot }
sub html_dir    { $HtmlDir }

# Like the real module: the most recently added preprocessor runs first.
sub add_block_preprocessor(&) { unshift @BlockPreprocessors, shift }
sub add_cleanup_handler { unshift @CleanupHandlers, shift }
sub add_response_body_check { push @ResponseBodyChecks, shift }

sub env_to_nginx {
    croak "env_to_nginx: no arguments specified" unless @_;
    for my $v (@_) {
        croak "env_to_nginx: bad argument value: $v\n"
            if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

# String comparison honouring no_long_string() and Regexp expectations.
sub is_str {
    my ($got, $expected, $desc) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    return Test::More::like($got, $expected, $desc) if ref $expected eq 'Regexp';
    return Test::More::is($got, $expected, $desc) if $NoLongString;
    return Test::LongString::is_string($got, $expected, $desc);
}

sub bail_out {
    _cleanup();
    Test::More::BAIL_OUT(join '', @_);
}

# ---------------------------------------------------------------------------
# Main loop
# ---------------------------------------------------------------------------

sub run_tests {
    _probe_nginx();
    $ENV{TEST_NGINX_SERVER_PORT} //= $ServerPort;

    my @blocks = Test::Base::blocks();
    @blocks = shuffle @blocks unless $NoShuffle;

    for my $block (@blocks) {
        $_->($block) for @BlockPreprocessors;
        # Same test names as the real module: "<file> TEST n: title - ...".
        $block->set_value(name => "$0 " . $block->name);
        run_test($block);
    }

    _cleanup();
}

sub run_test {
    my $block = shift;
    my $name  = $block->name;
    return if defined $block->{SKIP};

    my $tb = Test::More->builder;
    my $first_test_of_block = $tb->current_test;

    for my $section (@UNSUPPORTED_SECTIONS) {
        next unless exists $block->{$section};
        Test::More::fail("$name - section '--- $section' is not supported by "
            . "the bundled runner (run this file under the real Test::Nginx)");
        return;
    }

    my %rand_ports;
    my $config = _expand_env(scalar $block->config, $name, \%rand_ports);
    local $LogLevel = $block->log_level if $block->log_level;

    my ($skip_count, $should_skip, $skip_reason) = _skip_spec($block);

    # Whether to (re)start nginx. As in the real module: a block WITHOUT a
    # config section reuses the nginx (and error.log) of the previous block;
    # a block with one always gets a freshly started nginx.
    my $restart = 0;
    if (!defined $config) {
        bail_out("$name - No '--- config' section specified and could not "
                 . "get previous one.") unless defined $PrevConfig;
    } else {
        $restart = 1;
    }

    my $startup_stderr = '';
    if ($restart && !$should_skip) {
        $PrevConfig = $config;
        _stop_nginx($name);
        _setup_server_root();
        _write_user_files($block, \%rand_ports);
        _write_config($block, $config, \%rand_ports);

        if (defined $block->must_die) {
            _run_must_die($block);
            _diagnose_failures($block, $first_test_of_block);
            return;
        }

        my $ok;
        ($ok, $startup_stderr) = _start_nginx($name);
        if (!$ok) {
            # The real module retries for 30 s and then bails out of the
            # whole run; we retry only while the port is busy (in
            # _start_nginx), then bail out with the reason.
            _diag_file("nginx stderr", $StartupStderrFile, 40);
            _diag_file($ErrLogFile, $ErrLogFile, 40);
            bail_out("$name - Cannot start nginx using $NginxBinary "
                     . "(config: $ConfFile)");
        }
        sleep $Sleep;
    }

    # --- init: Perl code run once per block, AFTER nginx has been started
    # and BEFORE the first request (and once for all repeat_each repeats),
    # which is exactly where the real module evaluates it. It is evaluated in
    # this package, with $block and $name visible (as in the real module).
    if ($block->init) {
        my $code = $block->init;
        eval "package K8sDisc::NginxRunner; no strict 'vars';\n"
             . "#line 1 \"--- init of $name\"\n$code\n;1" or do {
            my $err = $@ || 'unknown error';
            bail_out("$name - init failed: $err");
        };
    }

    $ErrLogFilePos = 0;
    for my $repeat (0 .. $RepeatEach - 1) {
        if ($repeat > 0) {
            _write_user_files($block, \%rand_ports);
        }
        if ($should_skip && defined $skip_count) {
            SKIP: {
                Test::More::skip("$name - $skip_reason", $skip_count);
            }
            next;
        }
        _run_requests($block, $repeat);
    }

    _diagnose_failures($block, $first_test_of_block, $startup_stderr);
}

# skip_eval / skip_nginx: "<count>: <condition>". The skipped count is per
# repeat, as in the real module.
sub _skip_spec {
    my $block = shift;
    my $name  = $block->name;

    if (defined(my $spec = $block->skip_eval)) {
        $spec =~ /^\s*(\d+)\s*:\s*(.*)/s
            or bail_out("$name - Invalid --- skip_eval spec: $spec");
        my ($n, $code) = ($1, $2);
        my $skip = eval $code;
        bail_out("$name - skip_eval - failed to eval the Perl code \"$code\": $@")
            if $@;
        return ($n, $skip, 'skip_eval');
    }

    if (defined(my $spec = $block->skip_nginx)) {
        $spec =~ m{^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)(?:\s*:\s*(.*))?\s*$}
            or bail_out("$name - Invalid --- skip_nginx spec: $spec");
        my ($n, $op, @v) = ($1, $2, $3, $4, $5);
        my $reason = $6 || "nginx version $op $v[0].$v[1].$v[2]";
        my $want = _canon_version(@v);
        my %cmp = (
            '<'  => sub { $_[0] < $_[1] },  '<=' => sub { $_[0] <= $_[1] },
            '>'  => sub { $_[0] > $_[1] },  '>=' => sub { $_[0] >= $_[1] },
        );
        return ($n, $cmp{$op}->($NginxVersion, $want), $reason);
    }

    return;
}

# ---------------------------------------------------------------------------
# must_die
# ---------------------------------------------------------------------------
#
# Real module: nginx is started (stdout to /dev/null, stderr NOT captured),
# one test checks that it exited non-zero (or with the exit code given as the
# section's value), then the error_log/no_error_log checks run against
# logs/error.log. No request is sent and --- init is not run. This repeats
# repeat_each() times with the same server root.
#
# Where messages land: OpenResty is built with the default error log
# "logs/error.log" (relative to the prefix), so config and init_by_lua errors
# land in the file the real module reads. Debian's nginx is built with
# --error-log-path=stderr, so they land on stderr only. We therefore start
# nginx with "-e logs/error.log" (same effect as OpenResty's default) AND
# capture stderr, and the checks below look at both.
sub _run_must_die {
    my $block = shift;
    my $name  = $block->name;
    my $must_die = $block->must_die;

    $ErrLogFilePos = 0;
    for my $repeat (0 .. $RepeatEach - 1) {
        my ($status, $exec_failed) = _exec_nginx();
        my $exit_code = $status >> 8;

        if ($exec_failed) {
            Test::More::fail("$name - failed to execute the nginx command line");
        } elsif ($status & 128) {
            Test::More::fail("$name - nginx core dumped");
        } elsif (looks_like_number($must_die)) {
            Test::More::is($exit_code, $must_die,
                           "$name - die with the expected exit code");
        } else {
            Test::More::isnt($status, 0, "$name - die as expected");
        }

        _check_error_log($block, $repeat, 0, _read_file($StartupStderrFile));

        if ($status == 0) {
            warn "WARNING: $name - nginx must die but it does not; killing it "
                 . "(req $repeat)\n";
            _stop_nginx($name);
        }
    }
}

# ---------------------------------------------------------------------------
# Requests and response checks
# ---------------------------------------------------------------------------

sub _run_requests {
    my ($block, $repeat) = @_;
    my $name = $block->name;

    my $reqs = _requests_from_block($block);
    bail_out("$name - request empty") unless @$reqs;

    my $timeout = _parse_time(scalar $block->timeout) // $Timeout;
    my $need_array = @$reqs > 1;

    for my $idx (0 .. $#$reqs) {
        my ($raw, $is_head) = _send_request($block, $reqs->[$idx], $timeout);

        if (!defined $block->ignore_response) {
            my $res = _parse_response($name, $raw, $is_head);
            _check_status($block, $res, $idx, $need_array);
            _check_raw_headers($block, $res, $idx, $need_array);
            _check_headers($block, $res, $idx, $need_array);
            _check_body($block, $res, $idx, $repeat, $need_array);
        }

        # Between the requests of a request array the real module also waits
        # and checks the (new part of the) error log; the last request is
        # followed by the final check below. So --- error_log patterns are
        # checked once per request, each time against the lines logged since
        # the previous check.
        if ($idx < $#$reqs) {
            sleep $block->wait if $block->wait;
            _check_error_log($block, $repeat, $need_array);
        }
    }

    sleep $block->wait if $block->wait;
    _check_error_log($block, $repeat, $need_array);
}

# One entry per request; each entry is a list of packets
# ({ value => bytes, delay_before => secs }).
sub _requests_from_block {
    my $block = shift;
    my $name  = $block->name;

    if (defined(my $raw = $block->raw_request)) {
        my @packets = ref $raw eq 'ARRAY'
            ? map { ref $_ ? $_ : { value => $_ } } @$raw
            : ({ value => $raw });
        return [\@packets];
    }

    my $request = $block->request;
    bail_out("$name - no '--- request' section") unless defined $request;

    my $more = $block->more_headers // '';
    my @list = ref $request eq 'ARRAY' ? @$request : ($request);
    bail_out("$name - invalid --- request: MUST be string or array of requests")
        if ref $request && ref $request ne 'ARRAY';

    my @out;
    for my $i (0 .. $#list) {
        my $hdrs = $more;
        if (ref $more eq 'ARRAY') {
            $hdrs = $more->[$i];
            bail_out("$name - --- more_headers lacks data for request $i")
                unless defined $hdrs;
        }
        push @out, _build_request($name, $list[$i], $hdrs);
    }
    return \@out;
}

# Turn "METHOD [URL [HTTP/x.y]]\n[body]" into wire bytes, the way the real
# module documents it: Host (localhost) and Connection (close) headers unless
# --- more_headers has them, Content-Length for a body (which is trimmed of
# surrounding whitespace), and leading "# comment" lines are dropped.
sub _build_request {
    my ($name, $req, $more_headers) = @_;

    my @packets;
    if (ref $req eq 'ARRAY') {
        @packets = map {
            ref $_ eq 'HASH' ? {%$_} : { value => $_ }
        } @$req;
    } elsif (!ref $req) {
        @packets = ({ value => $req });
    } else {
        bail_out("$name - a request must be a string or an array of packets");
    }

    my $text = join '', map { $_->{value} } @packets;
    my $orig_len = length $text;
    1 while $text =~ s/^\s*#[^\n]*\n|^\s+//s;    # comments, leading blanks
    my $dropped = $orig_len - length $text;

    my ($line, $content) = split /\n/, $text, 2;
    bail_out("$name - Request line should be non-empty")
        unless defined $line && $line =~ /\S/;
    $line =~ /^\s*(\S+)(?:\s+(\S+))?(?:\s+(\S+))?\s*$/
        or bail_out("$name - Request line is not valid: \"$line\"");
    my ($meth, $url, $ver) = ($1, $2 // '/', $3 // 'HTTP/1.1');
    $content //= '';
    my $body_start = $dropped + length($line) + 1;   # offset in the packets

    my ($hdrs, $chunked) = _parse_more_headers($more_headers);
    my $lead_trim = 0;
    my $extra = '';
    if (!$chunked && $content ne '' && $hdrs !~ /(?:^|\n)Content-Length:/i) {
        ($lead_trim) = map { length } $content =~ /^(\s*)/;
        $content =~ s/^\s+|\s+$//gs;
        $extra = "Content-Length: " . length($content) . "\r\n";
    }
    my $head = "$meth $url $ver\r\n";
    $head .= "Host: $ServerName\r\n" unless $hdrs =~ /(?:^|\n)Host:/i;
    $head .= "Connection: close\r\n" unless $hdrs =~ /(?:^|\n)Connection/i;
    $head .= "$hdrs$extra\r\n";

    # Re-split the (possibly trimmed) body along the caller's packet
    # boundaries, so [["POST /t\nna", {value => "me", delay_before => 1}]]
    # still sends "...na" and "me" in two writes.
    my @out;
    my ($pos, $body_pos) = (0, 0);
    for my $k (0 .. $#packets) {
        my $len = length $packets[$k]{value};
        my ($s, $e) = ($pos, $pos + $len);
        $pos = $e;
        my $from = _max($s, $body_start + $lead_trim) - $body_start - $lead_trim;
        my $to   = $e - $body_start - $lead_trim;
        my $piece = '';
        if ($to > $from && $from < length $content) {
            $piece = substr $content, $from, $to - $from;
            $body_pos = $from + length $piece;
        }
        my %p = %{ $packets[$k] };
        $p{value} = ($k == 0 ? $head : '') . $piece;
        push @out, \%p;
    }
    # Whatever the trimming left unassigned (cannot happen for plain
    # strings) goes with the last packet.
    $out[-1]{value} .= substr $content, $body_pos if $body_pos < length $content
        && @packets > 1;
    return \@out;
}

sub _parse_more_headers {
    my $in = shift // '';
    my ($out, $chunked) = ('', 0);
    for my $h (split /\n+/, $in) {
        next if $h =~ /^\s*#/ || $h !~ /\S/;
        my ($k, $v) = split /:\s*/, $h, 2;
        $v //= '';
        $chunked = 1 if lc $k eq 'transfer-encoding' && $v eq 'chunked';
        $out .= "$k: $v\r\n";
    }
    return ($out, $chunked);
}

# Send one request on its own connection and read until the server closes
# it. The timeout applies between two I/O events, as documented for the real
# module. On timeout the block fails ("client socket timed out") unless it
# has --- abort.
sub _send_request {
    my ($block, $packets, $timeout) = @_;
    my $name = $block->name;
    my $is_head = join('', map { $_->{value} } @$packets) =~ /^\s*HEAD\s+/ ? 1 : 0;

    my $sock;
    for my $try (1 .. 50) {
        $sock = IO::Socket::INET->new(
            PeerAddr => $ServerAddr, PeerPort => $ServerPortForClient,
            Proto => 'tcp', Timeout => $timeout,
        );
        last if $sock;
        if (!_nginx_alive()) {
            Test::More::fail("$name - Can't connect to $ServerAddr:"
                . "$ServerPortForClient: $! (nginx is not running)");
            return;
        }
        my $wait = ($Sleep + $Sleep * $try) * $try / 2;
        sleep($wait > 1 ? 1 : $wait);
    }
    if (!$sock) {
        Test::More::fail("$name - Can't connect to $ServerAddr:"
                         . "$ServerPortForClient: $! (aborted)");
        return;
    }
    binmode $sock;
    my $sel = IO::Select->new($sock);
    my $timed_out = 0;

    PACKET: for my $p (@$packets) {
        my $delay = $p->{delay_before} // $block->raw_request_middle_delay;
        sleep $delay if $delay && $p != $packets->[0];
        my $buf = $p->{value};
        while (length $buf) {
            if (!$sel->can_write($timeout)) { $timed_out = 1; last PACKET }
            my $n = syswrite $sock, $buf;
            if (!defined $n) {
                warn "WARNING: $name - write failed: $!\n";
                last PACKET;
            }
            substr($buf, 0, $n) = '';
        }
    }
    if (defined(my $how = $block->shutdown)) {
        shutdown $sock, ($how =~ /^\s*$/ ? 1 : $how);
    }

    my $resp = '';
    while (!$timed_out) {
        if (!$sel->can_read($timeout)) { $timed_out = 1; last }
        my $n = sysread $sock, my $chunk, 8192;
        last if !$n;    # EOF (or a reset, which ends the response too)
        $resp .= $chunk;
    }
    close $sock;

    if ($timed_out && !defined $block->abort) {
        Test::More::fail("ERROR: client socket timed out - $name");
    }
    return ($resp, $is_head);
}

# Minimal HTTP/1.x response parser: status, headers (names lower-cased,
# repeated headers joined with ", " like HTTP::Headers), body with
# Content-Length or chunked framing.
sub _parse_response {
    my ($name, $raw, $is_head) = @_;
    return undef if !defined $raw || $raw eq '';

    my ($head, $body) = split /\r?\n\r?\n/, $raw, 2;
    $body //= '';
    my @lines = split /\r?\n/, $head;
    my $status = shift @lines;
    my $res = { code => undef, headers => {}, raw_headers => "$head\r\n",
                content => undef };
    $res->{code} = $1 if $status =~ m{^HTTP/\d+(?:\.\d+)?\s+(\d{3})};

    for my $l (@lines) {
        my ($k, $v) = $l =~ /^([^:]+?)\s*:\s*(.*?)\s*$/ or next;
        push @{ $res->{headers}{lc $k} }, $v;
    }

    my $code = $res->{code} // 0;
    if ($is_head || $code == 304 || $code == 204 || $code == 101) {
        $res->{content} = '';
        return $res;
    }

    my $te  = _header($res, 'Transfer-Encoding');
    my $len = _header($res, 'Content-Length');
    if (defined $te && lc $te eq 'chunked') {
        my $out = '';
        while (1) {
            unless ($body =~ s/^\s*([0-9A-Fa-f]+)[^\r\n]*\r\n//) {
                Test::More::fail("$name - invalid chunked response body: "
                                 . _show(substr $body, 0, 80));
                last;
            }
            my $size = hex $1;
            last if $size == 0;
            if (length $body < $size + 2) {
                Test::More::fail("$name - truncated chunked response body");
                last;
            }
            $out .= substr $body, 0, $size;
            substr($body, 0, $size + 2) = '';
        }
        $res->{content} = $out;
    } elsif (defined $len && $len =~ /^\d+$/) {
        warn "WARNING: $name - response body truncated: $len expected, but "
             . "got " . length($body) . "\n" if length $body < $len;
        $res->{content} = substr $body, 0, $len;
    } else {
        $res->{content} = $body;
    }
    return $res;
}

sub _header {
    my ($res, $key) = @_;
    return undef unless $res && $res->{headers}{lc $key};
    return join ', ', @{ $res->{headers}{lc $key} };
}

# For a block with several requests every expectation must be an array with
# one entry per request; a single request may still use a one-element array.
sub _indexed {
    my ($block, $value, $idx, $need_array) = @_;
    if (ref $value eq 'ARRAY') {
        return $value->[$idx];
    }
    bail_out($block->name . " - You asked for many requests, the expected "
             . "results should be arrays as well.") if $need_array;
    return $value;
}

sub _check_status {
    my ($block, $res, $idx, $need_array) = @_;
    my $name = $block->name;
    my $got = ($res && $res->{code}) || '';
    if (defined $block->error_code_like) {
        my $pat = _indexed($block, scalar $block->error_code_like, $idx, $need_array);
        Test::More::like($got, qr/$pat/sm, "$name - status code ok");
    } elsif (defined $block->error_code) {
        # No trimming: like the real module, a block-form "--- error_code"
        # keeps its newline, so use the inline form "--- error_code: 404".
        my $want = _indexed($block, scalar $block->error_code, $idx, $need_array);
        Test::More::is($got, $want, "$name - status code ok");
    } else {
        Test::More::is($got, 200, "$name - status code ok");
    }
}

sub _check_raw_headers {
    my ($block, $res, $idx, $need_array) = @_;
    my $name = $block->name;
    my $raw  = $res ? $res->{raw_headers} : '';
    if (defined $block->raw_response_headers_like) {
        my $pat = _indexed($block, scalar $block->raw_response_headers_like, $idx, $need_array);
        Test::More::like($raw, qr/$pat/s, "$name - raw resp headers like");
    }
    if (defined $block->raw_response_headers_unlike) {
        my $pat = _indexed($block, scalar $block->raw_response_headers_unlike, $idx, $need_array);
        Test::More::unlike($raw, qr/$pat/s, "$name - raw resp headers unlike");
    }
}

# --- response_headers: one test per line. "Name: value" must match exactly;
# "!Name" means the header must be absent. --- response_headers_like: values
# are anchored regexes.
sub _check_headers {
    my ($block, $res, $idx, $need_array) = @_;
    my $name = $block->name;

    if (defined $block->response_headers) {
        my $spec = _indexed($block, scalar $block->response_headers, $idx, $need_array);
        for my $h (_parse_expected_headers($spec)) {
            my ($key, $val) = @$h;
            if (!defined $val) {
                Test::More::unlike($res ? $res->{raw_headers} : '',
                    qr/^\s*\Q$key\E\s*:/ms,
                    "$name - header $key not present in the raw headers");
                next;
            }
            $val =~ s/\$ServerPort\b/$ServerPort/g;
            $val =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            Test::More::is(_header($res, $key) // '', $val, "$name - header $key ok");
        }
    } elsif (defined $block->response_headers_like) {
        my $spec = _indexed($block, scalar $block->response_headers_like, $idx, $need_array);
        for my $h (_parse_expected_headers($spec)) {
            my ($key, $val) = @$h;
            Test::More::like(_header($res, $key) // '', qr/^$val$/,
                             "$name - header $key like ok");
        }
    }
}

sub _parse_expected_headers {
    my @out;
    for my $l (split /\n/, shift // '') {
        $l =~ s/^\s+|\s+$//g;
        next if $l eq '';
        if ($l =~ s/^!\s*//) {
            push @out, [$l, undef];
        } else {
            my ($k, $v) = split /\s*:\s*/, $l, 2;
            push @out, [$k, $v // ''];
        }
    }
    return @out;
}

sub _check_body {
    my ($block, $res, $idx, $repeat, $need_array) = @_;
    my $name = $block->name;
    my $content = $res ? $res->{content} : undef;

    if (defined $block->response_body) {
        my $want = _indexed($block, scalar $block->response_body, $idx, $need_array);
        if (defined $want && !ref $want) {
            $want =~ s/\$ServerPort\b/$ServerPort/g;
            $want =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
        }
        my $desc = "$name - response_body - response is expected "
                 . "(repeated req $repeat, req $idx)";
        if (ref $want) {
            Test::More::like($content, $want, $desc);
        } else {
            is_str($content, $want, $desc);
        }
    } elsif (defined $block->response_body_like
             || defined $block->response_body_unlike) {
        my $like = defined $block->response_body_like;
        my $pat = _indexed($block,
            $like ? scalar $block->response_body_like
                  : scalar $block->response_body_unlike,
            $idx, $need_array);
        $pat =~ s/\$ServerPort\b/$ServerPort/g;
        $pat =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
        my $summary = $content // '';
        $summary =~ s/^\s+|\s+$//g;
        $summary =~ s/\s+/ /g;
        my $type = $like ? 'like' : 'unlike';
        my $desc = "$name - response_body_$type - response is expected ($summary)";
        # Note: the block form "--- response_body_like" keeps its trailing
        # newline in the pattern (Test::Base), so prefer the inline form
        # "--- response_body_like: ..." or "eval qr/.../".
        $like ? Test::More::like($content, qr/$pat/s, $desc)
              : Test::More::unlike($content, qr/$pat/s, $desc);
    }

    $_->($block, $content, $idx, $repeat, 0) for @ResponseBodyChecks;
}

# ---------------------------------------------------------------------------
# error.log checks
# ---------------------------------------------------------------------------

# Lines of error.log logged since the previous check of this block (or all of
# them with check_accum_error_log()). Sleeps a little first, as the real module
# does, for messages logged after the response was sent (log phase).
sub _error_log_lines {
    sleep $Sleep * 3;
    open my $in, '<', $ErrLogFile or return [];
    seek $in, $ErrLogFilePos, 0 if !$CheckAccumErrLog && $ErrLogFilePos > 0;
    my @lines = <$in>;
    $ErrLogFilePos = tell $in unless $CheckAccumErrLog;
    close $in;
    return \@lines;
}

sub _patterns {
    my $pats = shift;
    return [$pats] if ref $pats eq 'Regexp';
    return [@$pats] if ref $pats eq 'ARRAY';
    chomp $pats;
    return [grep { $_ ne '' } split /\n+/, $pats];
}

sub _line_matches {
    my ($line, $pat) = @_;
    return ref $pat ? $line =~ $pat : index($line, $pat) >= 0;
}

# $extra: text that also counts as "the log" (nginx's stderr for must_die).
sub _check_error_log {
    my ($block, $repeat, $need_array, $extra) = @_;
    my $name = $block->name;
    my $lines = _error_log_lines();
    my @stderr_lines = defined $extra ? split /^/m, $extra : ();
    my @all = (@$lines, @stderr_lines);

    # --- grep_error_log / --- grep_error_log_out: the matched substrings,
    # one per line, compared with the expected text. Either may be an array
    # indexed by the repeat_each iteration.
    my $grep = $block->grep_error_log;
    if (defined $grep) {
        $grep = $grep->[$repeat] if ref $grep eq 'ARRAY';
        my $want = $block->grep_error_log_out;
        bail_out("$name - No --- grep_error_log_out defined but --- "
                 . "grep_error_log is defined") unless defined $want;
        $want = $want->[$repeat] if ref $want eq 'ARRAY';
        my $got = '';
        for my $l (@$lines) {
            if (ref $grep ? $l =~ $grep : $l =~ /\Q$grep\E/) {
                my $m = $&;
                $got .= "$m\n" unless $m =~ /\n/;
            }
        }
        is_str($got, $want, "$name - grep_error_log_out (req $repeat)");
    } elsif (defined $block->grep_error_log_out) {
        bail_out("$name - No --- grep_error_log defined but --- "
                 . "grep_error_log_out is defined");
    }

    my %mentioned;    # levels the block asserts on itself: no extra warning
    for my $sec (qw(error_log no_error_log)) {
        my $v = $block->$sec;
        next unless defined $v;
        for my $p (@{ _patterns($v) }) {
            next if ref $p;
            $mentioned{$1} = 1 while $p =~ /\[(alert|crit|emerg)/g;
        }
    }

    # --- error_log: one test per pattern; each must match some line.
    if (defined $block->error_log) {
        for my $p (@{ _patterns(scalar $block->error_log) }) {
            my ($in_file) = grep { _line_matches($_, $p) } @$lines;
            my ($in_err)  = grep { _line_matches($_, $p) } @stderr_lines;
            if ($in_file || $in_err) {
                Test::More::pass("$name - pattern \"$p\" matches a line in "
                                 . "error.log (req $repeat)");
                # The real module reads only logs/error.log. Say so when the
                # match was only in nginx's stderr, since under the real
                # module with an nginx whose default error log is stderr
                # (Debian's) this check would fail.
                Test::More::note("$name - \"$p\" matched only nginx's stderr")
                    if !$in_file;
            } else {
                Test::More::fail("$name - pattern \"$p\" should match a line "
                                 . "in error.log (req $repeat)");
            }
        }
    }

    # --- no_error_log: one test per pattern; no line may match. (The real
    # module emits one failing test per matching line; we emit one per
    # pattern and list the matches, so a passing plan counts the same.)
    if (defined $block->no_error_log) {
        for my $p (@{ _patterns(scalar $block->no_error_log) }) {
            my @hits = grep { _line_matches($_, $p) } @all;
            my $ok = Test::More::ok(!@hits, "$name - pattern \"" . _show($p)
                . "\" does not match a line in error.log (req $repeat)");
            if (!$ok) {
                Test::More::diag("matching line: " . _show($_)) for @hits[0 .. _min($#hits, 4)];
                Test::More::diag("... and " . (@hits - 5) . " more") if @hits > 5;
            }
        }
    }

    # Like the real module: warn about unexpected [alert]/[crit]/[emerg]
    # lines, and fail on assertion failures.
    my $guard = 'writing a global lua variable';
    my $guard_mentioned = grep { !ref && index($_, $guard) >= 0 }
        map { @{ _patterns($block->$_ // []) } } qw(error_log no_error_log);
    for my $l (@$lines) {
        warn "WARNING: $name - " . _show($l) . "\n"
            if !$guard_mentioned && index($l, $guard) >= 0;
        for my $lvl (qw(alert crit emerg)) {
            warn "WARNING: $name - " . _show($l) . "\n"
                if !$mentioned{$lvl} && $l =~ /\[$lvl\]/;
        }
        Test::More::fail("$name - $l") if $l =~ /\bAssertion .*?failed\b/;
    }

    _check_access_log($block, $repeat) unless defined $block->ignore_response;
}

sub _check_access_log {
    my ($block, $repeat) = @_;
    my $name = $block->name;
    return unless defined $block->access_log || defined $block->no_access_log;
    sleep $Sleep * 3;
    my @lines = split /^/m, _read_file($AccLogFile);
    if (defined $block->access_log) {
        for my $p (@{ _patterns(scalar $block->access_log) }) {
            Test::More::ok((grep { _line_matches($_, $p) } @lines),
                "$name - pattern \"$p\" matches a line in access.log (req $repeat)");
        }
    }
    if (defined $block->no_access_log) {
        for my $p (@{ _patterns(scalar $block->no_access_log) }) {
            Test::More::ok(!(grep { _line_matches($_, $p) } @lines),
                "$name - pattern \"$p\" does not match a line in access.log (req $repeat)");
        }
    }
}

# After a block with failures: show what nginx said, so the failure can be
# understood without re-running by hand.
sub _diagnose_failures {
    my ($block, $first, $startup_stderr) = @_;
    my $tb = Test::More->builder;
    my @details = $tb->details;
    return unless grep { !$_->{ok} } @details[$first .. $#details];

    Test::More::diag("---- " . $block->name . ": generated config: $ConfFile");
    _diag_file("nginx stderr while starting", $StartupStderrFile, 20)
        if -s $StartupStderrFile;
    _diag_file("tail of $ErrLogFile, [debug] lines left out", $ErrLogFile, 30,
               qr/\[debug\]/);
}

# ---------------------------------------------------------------------------
# Server root, config file, nginx process
# ---------------------------------------------------------------------------

# Same layout and cleanup as the real module: conf/, html/ (with an
# index.html), logs/; stale *_temp and *_cache dirs are removed.
sub _setup_server_root {
    if (-d $ServRoot) {
        remove_tree($ConfDir, $HtmlDir, $LogDir, glob("$ServRoot/*_temp"),
                    glob("$ServRoot/*_cache"));
    }
    make_path($ServRoot, $LogDir, $HtmlDir, $ConfDir);
    -d $_ or bail_out("Failed to create $_") for $LogDir, $HtmlDir, $ConfDir;
    _write_file("$HtmlDir/index.html", '<html><head><title>It works!</title>'
        . '</head><body>It works!</body></html>');
    unlink $StartupStderrFile;
}

# --- user_files: ">>> name [mtime]" blocks, or an eval'd array of
# [name, body, mtime]. Relative names go under html/.
sub _write_user_files {
    my ($block, $rand_ports) = @_;
    my $files = $block->user_files or return;
    my $name = $block->name;
    if (!ref $files) {
        my @list;
        for my $line (split /^/m, $files) {
            if ($line =~ /^>>> (\S+)(?:\s+(.+))?/) {
                push @list, [$1, '', $2];
            } elsif (@list) {
                $list[-1][1] .= $line;
            }
        }
        $files = \@list;
    }
    bail_out("$name - --- user_files must be a string or an ARRAY")
        unless ref $files eq 'ARRAY';
    for my $f (@$files) {
        my ($fname, $body, $date) = @$f;
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        (my $dir = $path) =~ s{/[^/]*$}{};
        make_path($dir) unless -d $dir;
        _write_file($path, _expand_env($body // '', $name, $rand_ports));
        if ($date) {
            system('touch', '-t', $date, $path) == 0
                or bail_out("$name - failed to set the mtime of $path");
        }
    }
}

sub _write_config {
    my ($block, $config, $rand_ports) = @_;
    my $name = $block->name;

    my $http_config = _expand_env($block->http_config // '', $name, $rand_ports);
    my $main_config = $block->main_config // '';
    if ($LoadModules) {
        $main_config .= join ' ', map { "load_module $_;" }
                                  grep { length } split /\s+/, $LoadModules;
    }
    $main_config = _expand_env($main_config, $name, $rand_ports);
    my $post_main = _expand_env($block->post_main_config // '', $name, $rand_ports);
    my $err_log = $block->error_log_file || $ErrLogFile;
    my $server_name = $block->server_name // $ServerName;
    $server_name =~ s/\\/\\\\/g;
    $server_name =~ s/'/\\'/g;

    # Test::Nginx::Socket::Lua: TEST_NGINX_INIT_BY_LUA code is prepended to
    # the block's init_by_lua '...' (or added as one).
    if (my $code = $ENV{TEST_NGINX_INIT_BY_LUA}) {
        if ($http_config !~ /init_by_lua_file/) {
            $code =~ s/\\/\\\\/g;
            $code =~ s/['"]/\\$&/g;
            $http_config .= "init_by_lua '$code';"
                unless $http_config =~ s{init_by_lua\s*(['"])((?:\\.|.)*)\1\s*;}
                                        {init_by_lua $1$code$2$1;}s;
        }
    }

    my $env_lines = join '', map { "env $_;\n" }
        qw(MOCKEAGAIN_VERBOSE MOCKEAGAIN MOCKEAGAIN_WRITE_TIMEOUT_PATTERN
           LD_PRELOAD LD_LIBRARY_PATH DYLD_INSERT_LIBRARIES
           DYLD_FORCE_FLAT_NAMESPACE);
    $env_lines .= join '', map { my $v = /\s/ ? "'$_'" : $_; "env $v;\n" }
                           @EnvToNginx;

    my $root_location = $NoRootLocation ? '' : <<"_EOC_";
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_

    my $user = defined $WorkerUser ? "user $WorkerUser;\n"
             : $> == 0              ? "user root;\n"
             :                        '';

    _write_file($ConfFile, <<"_EOC_");
worker_processes  $Workers;
daemon on;
master_process $MasterProcess;
error_log $err_log $LogLevel;
pid       $PidFile;
$env_lines
$main_config

http {
    access_log $AccLogFile;

    default_type text/plain;
    keepalive_timeout  68;

$http_config

    server {
        listen          $ServerPort;
        server_name     '$server_name';

        client_max_body_size 30M;

        # Begin preamble config...
$ConfigPreamble
        # End preamble config...

        # Begin test case config...
$config
        # End test case config.

$root_location    }
}

$post_main

events {
    accept_mutex off;

    worker_connections  $WorkerConnections;
}
env ASAN_OPTIONS;
env MOCKNOEAGAIN_VERBOSE;
env MOCKNOEAGAIN;
$user
_EOC_
}

# $TEST_NGINX_XXX in config sections is replaced by the environment value
# (an undefined one is a fatal error, as in the real module).
# $TEST_NGINX_RAND_PORT_N becomes a free port, the same one within a block.
sub _expand_env {
    my ($text, $name, $rand_ports) = @_;
    return undef unless defined $text;
    my %used = ($ServerPort => 1, map { $_ => 1 } values %$rand_ports);
    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        my $var = $1;
        if ($var =~ /^TEST_NGINX_RAND_PORT_\d+$/) {
            $rand_ports->{$var} //= do {
                my $p = _free_port(\%used)
                    or bail_out("$name - Cannot find a free port for $var");
                $used{$p} = 1;
                $p;
            };
        } else {
            defined $ENV{$var}
                or bail_out("$name - No environment $var defined.");
            $ENV{$var};
        }
    }ge;
    return $text;
}

sub _free_port {
    my $used = shift;
    for (1 .. 1000) {
        my $port = int(rand 63550) + 1985;
        next if $used->{$port};
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                      LocalPort => $port, Proto => 'tcp');
        if ($s) { close $s; return $port }
    }
    return undef;
}

sub _probe_nginx {
    my $bin = _can_run($NginxBinary)
        or bail_out("Cannot find the nginx executable \"$NginxBinary\" "
                    . "(set TEST_NGINX_BINARY or PATH)");
    my $out = `'$bin' -V 2>&1`;
    bail_out("Failed to get the version of $bin: $out") if $? != 0;
    $out =~ m{(?:nginx|openresty)[^/]*/(\d+)\.(\d+)\.(\d+)}
        or bail_out("Failed to parse the output of \"nginx -V\": $out");
    $NginxVersion  = _canon_version($1, $2, $3);
    $SupportsDashE = $NginxVersion >= _canon_version(1, 19, 5);
}

sub _canon_version { sprintf "%d.%03d%03d", @_ }

sub _can_run {
    my $cmd = shift;
    return (-f $cmd && -x _) ? $cmd : undef if $cmd =~ m{/};
    for my $dir (split /\Q$Config::Config{path_sep}\E/, $ENV{PATH} // '') {
        next if $dir eq '';
        return "$dir/$cmd" if -f "$dir/$cmd" && -x _;
    }
    return undef;
}

# Run "nginx -p <root>/ -c <conf> [-e <error.log>]" and wait for it to exit.
# With "daemon on" that is the moment the daemon has forked, so the listening
# socket is already bound when this returns. stdout goes to /dev/null (as in
# the real module); stderr is captured in $StartupStderrFile.
sub _exec_nginx {
    my @cmd = (_can_run($NginxBinary), '-p', "$ServRoot/", '-c', $ConfFile);
    push @cmd, '-e', $ErrLogFile if $SupportsDashE;
    warn "running: @cmd\n" if $Verbose;

    my $pid = fork;
    bail_out("fork() failed: $!") unless defined $pid;
    if ($pid == 0) {
        open STDIN,  '<', '/dev/null';
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', $StartupStderrFile;    # only this start's output
        { no warnings 'exec'; exec { $cmd[0] } @cmd; }
        POSIX::_exit(127);    # never run END blocks in the child
    }
    waitpid $pid, 0;
    my $status = $?;
    return ($status, ($status >> 8) == 127);
}

sub _start_nginx {
    my $name = shift;
    my $deadline = time + 10;
    while (1) {
        my ($status) = _exec_nginx();
        if ($status == 0) {
            # Wait for the daemon's pid file: it is written after the fork.
            for (1 .. 200) {
                last if -s $PidFile;
                sleep 0.01;
            }
            return (1, _read_file($StartupStderrFile));
        }
        # A port still held by a previous nginx (or another test run) is
        # worth waiting for; anything else is a real error.
        my $why = _read_file($StartupStderrFile) . _read_file($ErrLogFile);
        return (0, $why) unless $why =~ /Address already in use/ && time < $deadline;
        warn "$name - port $ServerPort busy, retrying\n";
        unlink $StartupStderrFile;
        sleep 0.5;
    }
}

sub _pid_from_file {
    open my $in, '<', $PidFile or return undef;
    my $pid = <$in>;
    close $in;
    return undef unless defined $pid && $pid =~ /^\s*(\d+)/;
    return $1;
}

# kill(0) alone is not enough: a process that is not our child stays a
# zombie until its parent reaps it, and in some containers PID 1 never does.
# A zombie has exited as far as we are concerned.
sub _is_alive {
    my $pid = shift;
    return 0 unless $pid;
    # Reap it if it is our (adopted) child; see K8sDiscTest::_become_subreaper.
    waitpid $pid, WNOHANG;
    return 0 unless kill 0, $pid;
    if (open my $fh, '<', "/proc/$pid/stat") {
        my $stat = <$fh> // '';
        return 0 if $stat =~ /^\d+ \(.*\) Z/s;
    }
    return 1;
}

sub _nginx_alive { _is_alive(_pid_from_file()) }

sub _children_of {
    my $ppid = shift;
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $line = <$fh> // next;
        push @kids, $1 if $line =~ /^(\d+) \(.*\) \S+ (\d+) /s && $2 == $ppid;
    }
    return @kids;
}

# Stop the nginx of the previous block: QUIT (graceful) and wait up to
# timeout() for the master AND its workers to be gone, then TERM a few times,
# then KILL the process group (the daemon is a session leader, so its group
# is exactly nginx's processes). Workers must be gone before the next block
# starts, or they may still answer on the port or write to the log.
sub _stop_nginx {
    my $name = shift // 'cleanup';
    my $pid = _pid_from_file();
    if (!$pid || !_is_alive($pid)) {
        unlink $PidFile;
        return;
    }
    my @procs = ($pid, _children_of($pid));
    my $gone = sub { !grep { _is_alive($_) } @procs };

    kill 'QUIT', $pid;
    my $deadline = time + $Timeout;
    sleep 0.02 until $gone->() || time > $deadline;

    if (!$gone->()) {
        warn "$name - timeout when waiting for nginx ($pid) to exit\n";
        for my $i (1 .. 20) {
            kill 'TERM', grep { _is_alive($_) } @procs;
            sleep 0.05 * $i;
            last if $gone->();
        }
    }
    if (!$gone->()) {
        warn "$name - WARNING: killing nginx ($pid) with force\n";
        kill 'KILL', -$pid;
        kill 'KILL', grep { _is_alive($_) } @procs;
        for (1 .. 100) { last if $gone->(); sleep 0.05 }
    }
    unlink $PidFile;
}

sub _cleanup {
    $_->() for @CleanupHandlers;
}

END {
    if ($$ == $MainPid) {
        local $?;    # keep the test's exit status
        _cleanup();
        _stop_nginx('END') unless $ENV{TEST_NGINX_NO_CLEAN};
        if ($Randomize && $ServRoot =~ m{/t/servroot_\d+$} && -d $ServRoot) {
            remove_tree($ServRoot);
        }
        unlink $StartupStderrFile;
    }
}

# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

sub _parse_time {
    my $t = shift;
    return undef unless defined $t;
    $t =~ s/^\s+|\s+$//g;
    return $1 / 1000 if $t =~ /^([\d.]+)ms$/;
    return $1        if $t =~ /^([\d.]+)s?$/;
    return $t;
}

sub _read_file {
    my $f = shift;
    open my $in, '<', $f or return '';
    local $/;
    my $s = <$in>;
    return $s // '';
}

sub _write_file {
    my ($f, $data) = @_;
    open my $out, '>', $f or bail_out("Can't open $f for writing: $!");
    binmode $out;
    print $out $data;
    close $out or bail_out("Can't write $f: $!");
}

sub _diag_file {
    my ($title, $file, $n, $skip) = @_;
    my @lines = split /^/m, _read_file($file);
    @lines = grep { $_ !~ $skip } @lines if $skip;
    @lines = @lines[-$n .. -1] if @lines > $n;
    Test::More::diag("---- $title (" . scalar(@lines) . " lines) ----");
    Test::More::diag(join '', @lines) if @lines;
}

sub _show {
    my $s = shift // '';
    $s = "$s";
    chomp $s;
    $s =~ s/"/\\"/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\n/\\n/g;
    return $s;
}

sub _max { $_[0] > $_[1] ? $_[0] : $_[1] }
sub _min { $_[0] < $_[1] ? $_[0] : $_[1] }

1;
