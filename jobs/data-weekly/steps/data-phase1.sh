# data-phase1 (workload): phase-1 collection, then prune delisted tickers.
cd "$SPOTSTEP_WORKDIR/repo"

echo "data-phase1: weekly_collector.py --phase 1 starting at $(date -u)"
"$PYTHON_BIN" weekly_collector.py --phase 1 ${SPOTSTEP_PREFLIGHT_FLAG:+"$SPOTSTEP_PREFLIGHT_FLAG"}
echo "data-phase1: collection complete at $(date -u)"

# The prune writes to the ArcticDB universe, and --apply has no preflight
# form, so a preflight run skips it.
if [ "$SPOTSTEP_PREFLIGHT" = "1" ]; then
    echo "data-phase1: preflight run, skipping builders.prune_delisted_tickers --apply"
    exit 0
fi
echo "data-phase1: builders.prune_delisted_tickers --apply starting at $(date -u)"
"$PYTHON_BIN" -m builders.prune_delisted_tickers --apply
echo "data-phase1: prune complete at $(date -u)"
