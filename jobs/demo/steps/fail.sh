# fail (workload): exits 3 until a test creates state/fail.ok, then succeeds.
# This lets a test fix the failure and redrive.
echo "fail ran" >> "$SPOTSTEP_WORKDIR/state/ran.log"

echo "fail: starting"
echo "fail: looking for $SPOTSTEP_WORKDIR/state/fail.ok"
if [ -f "$SPOTSTEP_WORKDIR/state/fail.ok" ]; then
    echo "fail: fixed"
    exit 0
fi
echo "fail: not there"
echo "fail: about to exit 3"
exit 3
