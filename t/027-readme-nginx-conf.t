# The README's complete nginx.conf, started exactly as written: the block after the "README-nginx.conf" marker is
# copied byte for byte into a fresh nginx prefix that holds a `make install` tree, the fake API server plays the
# cluster (TLS, a token, reached through a kubeconfig), and requests go through the config's own routes. Needs an
# nginx with the lua module compiled in (OpenResty, the agent build); skipped, saying why, elsewhere.

use strict;
use warnings;
use Test::More;
use lib 't/lib';
use File::Temp ();
use HTTP::Tiny;
use JSON::PP ();
use POSIX ();
use Time::HiRes ();
use K8sDiscTest fake_api => 0;

skip_unless('static_lua');

my $root = $K8sDiscTest::Root;
my $nginx = nginx_features()->{binary};

# The config as the README shows it.
open my $readme, '<', "$root/README.md" or die "README.md: $!";
my $text = do { local $/; <$readme> };
my ($conf) = $text =~ /<!-- README-nginx\.conf -->\n```nginx\n(.*?)```\n/s
    or BAIL_OUT('README.md has no nginx.conf block after the README-nginx.conf marker');

# A prefix with the installed tree (lib/, lua/) beside conf/ and logs/, readable by nginx's workers.
my $prefix = File::Temp::tempdir('k8s-disc-readme-XXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $prefix;
my $make = system("make --no-print-directory -C '$root' install PROFILE=debug PREFIX='$prefix' >/dev/null") >> 8;
is($make, 0, 'make install into the nginx prefix') or BAIL_OUT('make install failed');
mkdir "$prefix/$_" for qw(conf logs tls);
open my $out, '>', "$prefix/conf/nginx.conf" or die $!;
print $out $conf;
close $out;

# The cluster: the fake API server with TLS and a token, and a kubeconfig that points at it.
my $token = 'readme-token';
my $port = K8sDiscTest::fake_api_start(args => ['--tls', '--tls-dir', "$prefix/tls", '--token', $token]);
open my $kc, '>', "$prefix/tls/kubeconfig" or die $!;
print $kc <<"_EOK_";
apiVersion: v1
kind: Config
current-context: demo
clusters:
- name: demo
  cluster: {server: "https://127.0.0.1:$port", certificate-authority: ca.crt}
contexts:
- name: demo
  context: {cluster: demo, user: gateway}
users:
- name: gateway
  user: {token: $token}
_EOK_
close $kc;
# The backend of default/web:http is the fake itself: its /fake/ paths also answer plain HTTP.
my $st = K8sDiscTest::fake_api('POST', '/fake/apply', {
    kind => 'EndpointSlice', apiVersion => 'discovery.k8s.io/v1',
    metadata => { namespace => 'default', name => 'web-1', labels => { 'kubernetes.io/service-name' => 'web' } },
    addressType => 'IPv4',
    endpoints => [{ addresses => ['127.0.0.1'], conditions => { ready => JSON::PP::true } }],
    ports => [{ name => 'http', port => $port + 0 }],
});
is($st, 200, 'the backend service exists');

# nginx started as an operator would, with KUBECONFIG in its environment.
local $ENV{KUBECONFIG} = "$prefix/tls/kubeconfig";
my $started = system($nginx, '-p', "$prefix/", '-c', 'conf/nginx.conf') >> 8;
is($started, 0, 'nginx starts with the README config') or diag(`tail -20 $prefix/logs/error.log`);
my $stop = sub {
    return unless -f "$prefix/logs/nginx.pid";
    system($nginx, '-p', "$prefix/", '-c', 'conf/nginx.conf', '-s', 'quit');
    for (1 .. 100) { last unless -f "$prefix/logs/nginx.pid"; Time::HiRes::sleep(0.05) }
};

my $http = HTTP::Tiny->new(timeout => 5, proxy => undef, http_proxy => undef, https_proxy => undef);
my $get = sub { $http->get("http://127.0.0.1:8080$_[0]") };
my $through;
for (1 .. 100) {
    $through = $get->('/fake/stats');
    last if $through->{status} == 200;
    Time::HiRes::sleep(0.1);
}
is($through->{status}, 200, 'a request is balanced onto the discovered node')
    or diag("$through->{status} $through->{content}\n", `tail -20 $prefix/logs/error.log`);
like($through->{content}, qr/"resourceVersion"/, '... and answered by it');

my $lookup = JSON::PP->new->decode($get->('/k8s-disc/lookup?service=default/web:http')->{content});
is_deeply([$lookup->{found} ? 'found' : 'not found', $lookup->{nodes}[0]{host}, $lookup->{nodes}[0]{port} + 0],
          ['found', '127.0.0.1', $port + 0], 'the lookup route shows the node')
    or diag(JSON::PP->new->canonical->encode($lookup));
like($get->('/k8s-disc/metrics')->{content}, qr/^k8s_disc_ready\{cluster=""\} 1$/m, 'the metrics route');

my $log = do { open my $fh, '<', "$prefix/logs/error.log"; local $/; <$fh> // '' };
unlike($log, qr/\[(?:error|crit|alert|emerg)\]/, 'no errors logged') or diag($log);
unlike($log, qr/\Q$token\E/, 'the token never reaches the log');

$stop->();
K8sDiscTest::fake_api_stop();
done_testing();
