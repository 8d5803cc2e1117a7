#!/bin/bash
# Queue hardening through the real binaries: unknown job kinds are refused at submit,
# listing the kinds of that binary (the test binary's own registry, not a fixed list);
# throwaway queue locations are refused (no job id printed); the database, WAL and SHM
# files are owner-only (or [queue] file_mode); a read-only directory and a damaged schema
# version are said in words.
set -u
T="$VLQ_TESTKINDS_BIN"
V="$VLQ_BIN"
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TEST_TMPDIR"
export VLQ_DB="$TEST_TMPDIR/q.db"
echo data > a.txt

# ---- unknown job kinds ----
out=$("$V" submit nosuchkind a.txt 2>&1); rc=$?
[ $rc = 2 ] || fail "unknown kind: exit $rc: $out"
echo "$out" | grep -q "unknown job kind 'nosuchkind' (this vlq runs: ocr, summarize)" ||
    fail "unknown kind message: $out"
out=$("$V" submit "" a.txt 2>&1); rc=$?
[ $rc = 2 ] && echo "$out" | grep -q "the job kind is empty" || fail "empty kind: $rc $out"
# the test binary knows its own kinds, and only those
out=$("$T" submit ocr a.txt 2>&1); rc=$?
[ $rc = 2 ] && echo "$out" | grep -q "this vlq runs: test.echo, test.sleep, test.flaky, test.bad" ||
    fail "test binary, ocr: $rc $out"
id=$("$T" submit test.echo a.txt) || fail "a known kind was refused"
[ -n "$id" ] || fail "no job id"
[ "$("$T" list --limit 0 | wc -l)" = 1 ] || fail "a refused submit queued something"

# ---- a long idempotency key over several files: one job per file, none merged ----
echo other > b.txt
key=$(printf 'k%.0s' $(seq 1 600))
ids=$("$T" submit test.echo a.txt b.txt --key "$key") || fail "long key submit"
[ "$(echo "$ids" | sort -u | wc -l)" = 2 ] || fail "long key: ids '$ids' (a cut key merged two files)"
again=$("$T" submit test.echo a.txt b.txt --key "$key")
[ "$again" = "$ids" ] || fail "long key resubmit: '$again' vs '$ids'"

# ---- throwaway locations: refused, nothing printed on stdout ----
for db in "" ":memory:" "file::memory:" "file:t.db?mode=memory"; do
    out=$("$T" --db "$db" submit test.echo a.txt 2> err.txt); rc=$?
    [ $rc = 1 ] && [ -z "$out" ] || fail "--db '$db': exit $rc, printed '$out'"
    grep -Eq "empty|in-memory|temporary" err.txt || fail "--db '$db': $(cat err.txt)"
done
out=$(VLQ_DB=":memory:" "$T" submit test.echo a.txt 2> err.txt); rc=$?
[ $rc = 1 ] && [ -z "$out" ] || fail "VLQ_DB=:memory:: exit $rc, printed '$out'"

# ---- file modes: 0600 by default, WAL and SHM too (seen while a worker holds them) ----
mode() { stat -c %a "$1" 2>/dev/null || echo none; }
export VLQ_DB="$TEST_TMPDIR/m.db"
umask 022
id=$("$T" submit test.sleep a.txt --prompt "20 50") || fail "submit for modes"
[ "$(mode m.db)" = 600 ] || fail "m.db: mode $(mode m.db), want 600"
"$T" worker --once 2> wm.log & wpid=$!
for _ in $(seq 1 100); do [ -e m.db-shm ] && [ -e m.db-wal ] && break; sleep 0.05; done
[ "$(mode m.db-wal)" = 600 ] && [ "$(mode m.db-shm)" = 600 ] ||
    fail "WAL/SHM modes: $(mode m.db-wal) $(mode m.db-shm)"
wait $wpid
printf '[queue]\nfile_mode = 0660\n' > group.conf
VLQ_DB="$TEST_TMPDIR/g.db" "$T" --config group.conf submit test.echo a.txt > /dev/null || fail "group submit"
[ "$(mode g.db)" = 660 ] || fail "g.db: mode $(mode g.db), want 660"
printf '[queue]\nfile_mode = 0644\n' > open.conf
out=$(VLQ_DB="$TEST_TMPDIR/o.db" "$T" --config open.conf submit test.echo a.txt 2>&1); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q "queue.file_mode: 0644" || fail "file_mode 0644: $rc $out"
[ ! -e o.db ] || fail "o.db created despite a refused mode"
export VLQ_DB="$TEST_TMPDIR/q.db"

# ---- a read-only directory, in words (as an unprivileged user: root writes anywhere) ----
mkdir ro
"$T" --db ro/q.db submit test.echo a.txt > /dev/null || fail "submit into ro/"
chmod 555 ro
as_user=()
if [ "$(id -u)" = 0 ]; then
    chmod 666 ro/q.db
    chmod o+rx "$TEST_TMPDIR"; chmod o+r a.txt
    if setpriv --reuid=65534 --regid=65534 --clear-groups true 2>/dev/null; then
        as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
    fi
fi
if [ "$(id -u)" != 0 ] || [ ${#as_user[@]} -gt 0 ]; then
    out=$("${as_user[@]}" "$T" --db ro/new.db submit test.echo a.txt 2>&1); rc=$?
    [ $rc = 1 ] && echo "$out" | grep -q "ro: directory is read-only" || fail "ro new: $rc $out"
    out=$("${as_user[@]}" "$T" --db ro/q.db list 2>&1); rc=$?
    [ $rc = 1 ] && echo "$out" | grep -q "ro: directory is read-only" || fail "ro list: $rc $out"
    echo "$out" | grep -q "readonly database" && fail "SQLite's words leaked: $out"
else
    echo "skip: read-only directory (running as root without setpriv)" >&2
fi
chmod 755 ro

# ---- a damaged schema version ----
"$T" --db s.db submit test.echo a.txt > /dev/null
python3 -c 'import sqlite3; c = sqlite3.connect("s.db"); c.execute("PRAGMA user_version=0"); c.commit()'
out=$("$T" --db s.db list 2>&1); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q "the schema version is 0" || fail "version 0: $rc $out"
echo "ok"
