#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# deploy/verify.sh: checks the systemd units of deploy/ with `systemd-analyze verify`, on
# a build machine where nothing is installed.
#
#   deploy/verify.sh            check every deploy/*.service
#
# How: the units are copied into a temporary directory; a template (name@.service) is
# instantiated as name@1.service; every Exec*= command under /usr/local/ (the programs
# we install: nisshi, publisher, detector-worker, viewer, counter, archive) is rewritten
# to an executable stub inside the temporary directory, because `systemd-analyze verify`
# fails when a command does not exist. Commands elsewhere (e.g. /bin/mv) must exist on
# this machine; systemd-analyze does not check commands whose failure is ignored ('-'
# prefix, e.g. the counter's ExecStartPre=-/bin/mv). Then `systemd-analyze verify
# --man=no` runs on each copy.
#
# Any output of the verifier (it exits 0 on warnings such as an unknown key) counts as a
# failure: the script prints it and exits 1. It also checks that every ${VAR}/$VAR an
# Exec*= line uses is set in some deploy/*.env.example (an unset one becomes an empty
# argument, and the programs exit 2 on it). Exit 2: systemd-analyze is missing.
#
# Needs no root (systemd-analyze verify runs as any user). The temporary directory is
# removed on exit, whatever happens.
set -euo pipefail

deploy_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
instance="1"
stub_prefix="/usr/local/"

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "verify.sh: systemd-analyze not found (Debian: apt-get install systemd)" >&2
    exit 2
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/gkv-verify.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/units" "$tmp/stubs"

shopt -s nullglob
sources=("$deploy_dir"/*.service)
if ((${#sources[@]} == 0)); then
    echo "verify.sh: no *.service in $deploy_dir" >&2
    exit 1
fi

# Copies one unit into $tmp/units, rewriting Exec*= commands under $stub_prefix to stubs.
# Prints the copy's file name.
copy_unit() {
    local src="$1" name line re prefixes path rest stub
    name="$(basename "$src")"
    [[ "$name" == *@.service ]] && name="${name%@.service}@${instance}.service"
    re="^(Exec[A-Za-z]*=)([-@:+!]*)(${stub_prefix}[^[:space:]]*)(.*)$"
    while IFS= read -r line || [[ -n "$line" ]]; do
        if [[ "$line" =~ $re ]]; then
            prefixes="${BASH_REMATCH[2]}"
            path="${BASH_REMATCH[3]}"
            rest="${BASH_REMATCH[4]}"
            stub="$tmp/stubs$path"
            if [[ ! -e "$stub" ]]; then
                mkdir -p "$(dirname "$stub")"
                printf '#!/bin/sh\nexit 0\n' >"$stub"
                chmod 755 "$stub"
            fi
            line="${BASH_REMATCH[1]}${prefixes}${stub}${rest}"
        fi
        printf '%s\n' "$line"
    done <"$src" >"$tmp/units/$name"
    echo "$name"
}

failed=0
checked=()
for src in "${sources[@]}"; do
    copy="$(copy_unit "$src")"
    checked+=("$copy")
    # Run from the copies' directory so messages name ./unit rather than the temp path.
    set +e
    output="$(cd "$tmp/units" && SYSTEMD_COLORS=0 systemd-analyze verify --man=no "./$copy" 2>&1)"
    status=$?
    set -e
    output="${output//$tmp\/stubs/<stub>}"
    output="${output//$tmp\/units\//}"
    if ((status != 0)) || [[ -n "$output" ]]; then
        failed=1
        echo "FAIL $copy (deploy/$(basename "$src")): systemd-analyze verify exit status $status"
        printf '%s\n' "$output" | sed 's/^/    /'
    else
        echo "ok   $copy (deploy/$(basename "$src"))"
    fi
done

# Every variable an Exec*= line uses must be set in some env example.
declare -A defined=()
for env_file in "$deploy_dir"/*.env.example; do
    while IFS= read -r line; do
        [[ "$line" =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)= ]] && defined["${BASH_REMATCH[1]}"]=1
    done <"$env_file"
done
# shellcheck disable=SC2016 # tr's '${' are the characters to strip, not an expansion
for src in "${sources[@]}"; do
    while IFS= read -r var; do
        if [[ -z "${defined[$var]:-}" ]]; then
            failed=1
            echo "FAIL deploy/$(basename "$src"): \$$var is used on an Exec line but set in no deploy/*.env.example"
        fi
    done < <(grep -E '^Exec[A-Za-z]*=' "$src" | grep -oE '\$\{?[A-Za-z_][A-Za-z0-9_]*' | tr -d '${' | sort -u)
done

echo "checked ${#checked[@]} unit(s): ${checked[*]} (systemd-analyze $(systemd-analyze --version | head -n 1 | awk '{print $2}'))"
if ((failed)); then
    echo "verify.sh: FAILED"
    exit 1
fi
echo "verify.sh: all units passed"
