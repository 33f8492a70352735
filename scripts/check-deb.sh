#!/usr/bin/env bash
# Checks the Debian package as CI does (root, on a machine without pidbeat installed):
# lintian finds no error; `dpkg -i` installs it; the man pages, completion files, units and
# rules are where Debian looks for them; the installed `pidbeat ps` runs; `dpkg --purge`
# leaves no file of it behind.
#
#   scripts/check-deb.sh [PATH.deb]      (default: build it with scripts/package-deb.sh)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
deb=${1:-$(bash "$here/package-deb.sh")}
[[ -f $deb ]] || { echo "check-deb: no package at '$deb'" >&2; exit 1; }
((EUID == 0)) || { echo "check-deb: installs a package: run as root" >&2; exit 1; }
if dpkg-query -W -f '${Status}' pidbeat 2>/dev/null | grep -q 'installed'; then
    echo "check-deb: pidbeat is installed on this machine already; not touching it" >&2
    exit 1
fi

fail() { echo "check-deb: $*" >&2; exit 1; }
step() { echo "check-deb: $*" >&2; }

tmp=$(mktemp -d)
installed=false
cleanup() {
    if $installed; then dpkg --purge pidbeat >/dev/null 2>&1 || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

step "lintian $deb"
# Errors fail; warnings are shown. (lintian warns when run as root: not about the package.)
lintian --fail-on error "$deb" 2> >(grep -v 'running with root privileges' >&2)

step "dpkg -i"
dpkg -i "$deb" >/dev/null
installed=true
dpkg-query -L pidbeat >"$tmp/files"

# The man pages, found as `man` finds them; every subcommand has one.
page=$(man -w pidbeat-ps) || fail "man -w pidbeat-ps finds nothing"
[[ $page == /usr/share/man/man1/pidbeat-ps.1.gz ]] || fail "pidbeat-ps(1) is at $page"
for sub in $(/usr/bin/pidbeat man --dir "$tmp/man" | sed -n 's|.*/pidbeat-\(.*\)\.1$|\1|p'); do
    man -w "pidbeat-$sub" >/dev/null || fail "no installed page for pidbeat-$sub"
done
man -w pidbeat-etcd >/dev/null || fail "no page for pidbeat-etcd"

# Completion, in each shell's vendor directory, as pidbeat prints it.
for f in bash:/usr/share/bash-completion/completions/pidbeat \
    zsh:/usr/share/zsh/vendor-completions/_pidbeat \
    fish:/usr/share/fish/vendor_completions.d/pidbeat.fish; do
    shell=${f%%:*} path=${f#*:}
    [[ -s $path ]] || fail "no $shell completion at $path"
    cmp -s "$path" <(/usr/bin/pidbeat completions "$shell") ||
        fail "$path is not what 'pidbeat completions $shell' prints"
done
bash -c 'source /usr/share/bash-completion/completions/pidbeat && complete -p pidbeat' \
    >/dev/null || fail "the bash completion does not register"

# The units and the rules.
for f in /lib/systemd/system/pidbeat-publish@.service \
    /lib/systemd/system/pidbeat-textfile@.service \
    /usr/share/pidbeat/prometheus/pidbeat.rules.yml \
    /usr/bin/pidbeat-etcd; do
    [[ -e $f ]] || fail "$f is missing"
done

# The installed binary runs, on a run dir of its own (never the real ~/.config/mosaic).
mkdir -m 700 "$tmp/run" "$tmp/home"
out=$(HOME=$tmp/home /usr/bin/pidbeat ps --run-dir "$tmp/run" --prom) ||
    fail "the installed pidbeat ps failed"
grep -q '^pidbeat_run_dir_readable 1$' <<<"$out" || fail "pidbeat ps --prom said: $out"
HOME=$tmp/home /usr/bin/pidbeat ps --run-dir "$tmp/run" >/dev/null 2>&1
step "installed pidbeat ps ran: $(/usr/bin/pidbeat --version)"

step "dpkg --purge"
dpkg --purge pidbeat >/dev/null
installed=false
dpkg-query -W pidbeat >/dev/null 2>&1 && fail "dpkg still knows pidbeat"
# Every file and link it installed is gone, and every directory that only it used.
left=()
while IFS= read -r p; do
    [[ $p == / || $p == /. ]] && continue
    if [[ -d $p ]]; then
        # A shared directory (/usr/share/man …, /lib as a link to usr/lib) stays: it is not
        # pidbeat's.
        if [[ -z $(ls -A "$p") ]] || [[ $p == */pidbeat ]]; then left+=("$p"); fi
    elif [[ -e $p || -L $p ]]; then
        left+=("$p")
    fi
done <"$tmp/files"
((${#left[@]} == 0)) || fail "left behind after dpkg --purge: ${left[*]}"
step "ok: lintian clean, installed, checked, purged without a trace"
