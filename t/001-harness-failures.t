# Checks that the harness's checks CAN fail: runs t/harness/expected-failures.pl
# (a Test::Nginx-format file whose blocks are wrong on purpose) in a
# subprocess with the same backend and environment, and looks at its TAP.
# Needs only nginx with the lua module.

use strict;
use warnings;
use Test::More;

my $fixture = 't/harness/expected-failures.pl';
my @tap = `$^X $fixture 2>&1`;
my $exit = $? >> 8;

# Result lines per block: "TEST n" => [ [ok?, description], ... ]
my %by_block;
for (@tap) {
    next unless /^(not )?ok \d+ - (.*)$/;
    my ($ok, $desc) = (!$1, $2);
    my ($block) = $desc =~ /\b(TEST \d+):/ or next;
    push @{ $by_block{$block} }, [$ok, $desc];
}
my $failed = sub {
    my ($block, $like) = @_;
    return grep { !$_->[0] && $_->[1] =~ $like } @{ $by_block{$block} || [] };
};

# prove fails a test file that exits non-zero OR whose TAP has no plan. The
# bundled runner exits non-zero. The real Test::Nginx turns off Test::More's
# end-of-run handling (no_ending) when a client socket times out (TEST 7), so
# it prints no plan and exits 0: prove still reports "No plan found".
my $has_plan = grep { /^1\.\.\d+/ } @tap;
ok($exit != 0 || !$has_plan, 'prove would fail the fixture (non-zero exit or no plan)')
    or diag "exit $exit, plan line present\n", @tap;

my $control = $by_block{'TEST 1'} || [];
is(scalar @$control, 4, 'control block: 4 tests (status, body, error_log, no_error_log)');
ok(!(grep { !$_->[0] } @$control), 'control block passes') or diag @tap;

my %expect = (
    'TEST 2'  => qr/response_body/,
    'TEST 3'  => qr/status code/,
    'TEST 4'  => qr/this line is never logged/,
    'TEST 5'  => qr/forbidden marker/,
    'TEST 6'  => qr/grep_error_log_out/,
    'TEST 7'  => qr/client socket timed out/,
    'TEST 8'  => qr/die as expected/,
    'TEST 9'  => qr/header X-Got/,
    'TEST 10' => qr/response_body_like/,
);
for my $block (sort { ($a =~ /(\d+)/)[0] <=> ($b =~ /(\d+)/)[0] } keys %expect) {
    ok(scalar $failed->($block, $expect{$block}),
       "$block fails on $expect{$block}")
        or diag "results for $block:\n",
                map { ($_->[0] ? "ok" : "not ok") . " - $_->[1]\n" }
                    @{ $by_block{$block} || [] };
}

done_testing();
