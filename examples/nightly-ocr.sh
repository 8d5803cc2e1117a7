#!/bin/sh
# nightly-ocr.sh: OCR yesterday's scans, for cron. The crontab line (02:30 every night):
#
#   30 2 * * *  VLQ_CONFIG=/etc/vlq/vlq.conf /usr/local/bin/nightly-ocr.sh /scans
#
# It queues one ocr job per file under SCANS/YYYY-MM-DD (yesterday's date), each with an
# idempotency key naming the file, so a second run the same night queues nothing twice;
# then it runs the queue dry (`vlq worker --drain`) and exits with its status: 0 when
# every job succeeded, 3 when some failed or died (their list is printed, so cron mails
# it), 1 on an error of vlq itself. Results land in the queue (`vlq result ID`) and, with
# [output] dir set in vlq.conf, as files; set VLQ_WEBHOOK to be told per job.
#
# usage: nightly-ocr.sh SCANS [DAY]   (DAY defaults to yesterday, as YYYY-MM-DD)
set -u
VLQ=${VLQ:-vlq}
SCANS=${1:?usage: nightly-ocr.sh SCANS [YYYY-MM-DD]}
DAY=${2:-$(date -d yesterday +%F)}
DIR="$SCANS/$DAY"
if [ ! -d "$DIR" ]; then
    echo "nightly-ocr: no scans for $DAY ($DIR is not a directory)"
    exit 0
fi
find "$DIR" -type f ! -name '.*' | sort | while IFS= read -r f; do
    "$VLQ" -q submit ocr "$f" --key "nightly-ocr:$f" ${VLQ_WEBHOOK:+--webhook "$VLQ_WEBHOOK"} \
        > /dev/null || exit 1
done || exit 1
"$VLQ" worker --drain
rc=$?
if [ $rc = 3 ]; then
    echo "nightly-ocr: some jobs of $DAY did not succeed:"
    "$VLQ" list --status dead --limit 50
fi
exit $rc
