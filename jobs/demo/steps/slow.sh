# slow (workload): runs for DEMO_SLOW_SECONDS (default 8), one line a second.
echo "slow ran" >> "$SPOTSTEP_WORKDIR/state/ran.log"

seconds="${DEMO_SLOW_SECONDS:-8}"
case "$seconds" in
    ''|*[!0-9]*) echo "slow: DEMO_SLOW_SECONDS must be a whole number, got [$seconds]"; exit 1 ;;
esac
for ((i = 1; i <= seconds; i++)); do
    echo "slow: tick $i/$seconds"
    sleep 1
done
echo "slow: done after ${seconds}s"
