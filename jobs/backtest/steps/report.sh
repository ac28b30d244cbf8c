# report (workload): reads the sweep's results index (spotstep-results/sweep.json), checks
# that every shard succeeded with a result for its own parameter set (the plan's rule), and
# writes the summary to state/summary-<run>.txt.
index="spotstep-results/sweep.json"
[ -f "$index" ] || { echo "report: no results index at $index"; exit 2; }
shards=$(grep -o '"shards":[0-9]*' "$index" | head -1 | cut -d: -f2)
succeeded=$(grep -o '"succeeded":[0-9]*' "$index" | head -1 | cut -d: -f2)
[ "$shards" = "$succeeded" ] || { echo "report: $succeeded of $shards shards succeeded"; exit 3; }
results=$(grep -o '"result":{[^}]*}' "$index")
[ "$(printf '%s\n' "$results" | wc -l)" = "$shards" ] || { echo "report: not every shard left a result"; exit 3; }
best_pnl=""
best_id=""
total=0
k=0
value() {
    [[ $2 =~ \"$1\":(-?[0-9]+) ]] || { echo "report: no $1 in $2"; exit 3; }
    echo "${BASH_REMATCH[1]}"
}
while IFS= read -r r; do
    id=$(value id "$r")
    expect="$k $((2 + k % 4)) $((8 + 2 * (k % 5))) $((1000 + 17 * k))"
    got="$id $(value fast "$r") $(value slow "$r") $(value seed "$r")"
    [ "$got" = "$expect" ] || { echo "report: shard $k's result is for [$got], not [$expect]"; exit 3; }
    value trades "$r" >/dev/null
    pnl=$(value pnl "$r")
    total=$((total + pnl))
    if [ -z "$best_pnl" ] || ((pnl > best_pnl)); then
        best_pnl=$pnl
        best_id=$id
    fi
    k=$((k + 1))
done <<<"$results"
summary="$SPOTSTEP_WORKDIR/state/summary-$SPOTSTEP_RUN_ID.txt"
printf 'shards=%s total_pnl=%s best_shard=%s best_pnl=%s\n' "$shards" "$total" "$best_id" "$best_pnl" | tee "$summary"
