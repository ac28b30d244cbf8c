# plan (workload): writes shards.json, one parameter set per shard, in the work folder;
# spotstep carries it out to the sweep. The parameters follow one rule of the shard number
# (report.sh checks them against it); `seconds` makes the shards' lengths uneven.
# BACKTEST_SHARDS (default 12) sets how many, BACKTEST_SECONDS_SCALE (default 1) stretches
# their lengths; state/bad-plan makes the list malformed.
count="${BACKTEST_SHARDS:-12}"
scale="${BACKTEST_SECONDS_SCALE:-1}"
if [ -f "$SPOTSTEP_WORKDIR/state/bad-plan" ]; then
    echo "plan: writing a malformed list (state/bad-plan)"
    echo '{"not": "an array"}' > shards.json
    exit 0
fi
{
    printf '['
    for ((k = 0; k < count; k++)); do
        ((k > 0)) && printf ','
        printf '{"id":%d,"fast":%d,"slow":%d,"seed":%d,"seconds":%d}' \
            "$k" $((2 + k % 4)) $((8 + 2 * (k % 5))) $((1000 + 17 * k)) $(((1 + (k * 7) % 3) * scale))
    done
    printf ']\n'
} > shards.json
echo "plan: $count shards written to shards.json"
