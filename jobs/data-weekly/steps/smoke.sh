# smoke (workload): import checks + a phase-1 dry run. Writes nothing, so it
# is the same in a preflight run.
cd "$SPOTSTEP_WORKDIR/repo"

echo "smoke: import weekly_collector (pulls in every collectors.* module)"
"$PYTHON_BIN" -c 'import weekly_collector; print("import OK")'

echo "smoke: import builders.prune_delisted_tickers"
"$PYTHON_BIN" -c 'from builders import prune_delisted_tickers; print("import OK")'

echo "smoke: weekly_collector.py --phase 1 --dry-run"
"$PYTHON_BIN" weekly_collector.py --phase 1 --dry-run
echo "smoke: passed"
