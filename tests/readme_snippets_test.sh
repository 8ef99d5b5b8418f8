#!/usr/bin/env bash
# README code snippets must be the marked blocks of the compiled examples, word for word:
# every "// [snippet:NAME]" ... "// [/snippet]" block of examples/*.cpp, with its common
# indentation removed, must appear in README.md.
set -euo pipefail
root="$1"
exec perl -e '
    use strict;
    my ($root) = @ARGV;
    local $/;
    open(my $r, "<", "$root/README.md") or die "README.md: $!";
    my $readme = <$r>;
    my ($count, $bad) = (0, 0);
    for my $file (glob("$root/examples/*.cpp")) {
        open(my $f, "<", $file) or die "$file: $!";
        my $src = <$f>;
        while ($src =~ m{^[ \t]*// \[snippet:([\w-]+)\][^\n]*\n(.*?)^[ \t]*// \[/snippet\]}msg) {
            my ($name, $body) = ($1, $2);
            my @lines = split /\n/, $body;
            my $indent = 1e9;
            for (@lines) { next unless /\S/; /^( *)/; $indent = length($1) if length($1) < $indent; }
            my $text = join("\n", map { length($_) >= $indent ? substr($_, $indent) : "" } @lines) . "\n";
            $count++;
            if (index($readme, $text) < 0) {
                print "README.md lacks snippet \"$name\" of $file as it is now:\n$text\n";
                $bad++;
            }
        }
    }
    die "no snippets found\n" if $count == 0;
    print "$count snippets checked\n";
    exit($bad ? 1 : 0);
' "$root"
