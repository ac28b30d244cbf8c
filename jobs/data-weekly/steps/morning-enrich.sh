# morning-enrich (workload): re-fetch Friday's polygon-settled closes.
# Must run before data-phase1 and its prune (mode order guarantees this).
cd "$SPOTSTEP_WORKDIR/repo"

echo "morning-enrich: starting at $(date -u)"
"$PYTHON_BIN" weekly_collector.py --morning-enrich ${SPOTSTEP_PREFLIGHT_FLAG:+"$SPOTSTEP_PREFLIGHT_FLAG"}
echo "morning-enrich: complete at $(date -u)"
