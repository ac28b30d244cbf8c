# nap (workload): says it started, then sleeps far past the step's 30 s timeout.
mkdir -p "$SPOTSTEP_WORKDIR/state"
echo "nap ran" >> "$SPOTSTEP_WORKDIR/state/ran.log"
echo "nap: started, sleeping 300 s"
sleep 300
echo "nap: woke up (must never be printed)"
