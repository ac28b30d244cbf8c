# sweep (workload, fans out): one backtest per shard. SPOTSTEP_SHARD_ITEM holds the
# parameter set; the result goes to SPOTSTEP_SHARD_RESULT. state/break-shard-<k> makes
# shard k fail until the file is removed (a fixable failure, then a redrive).
item="$SPOTSTEP_SHARD_ITEM"
field() {
    [[ $item =~ \"$1\":([0-9]+) ]] || { echo "sweep: no $1 in $item"; exit 2; }
    echo "${BASH_REMATCH[1]}"
}
id=$(field id)
fast=$(field fast)
slow=$(field slow)
seed=$(field seed)
seconds=$(field seconds)
echo "sweep: shard $SPOTSTEP_SHARD: fast=$fast slow=$slow seed=$seed (${seconds}s)"
if [ -f "$SPOTSTEP_WORKDIR/state/break-shard-$SPOTSTEP_SHARD" ]; then
    echo "sweep: shard $SPOTSTEP_SHARD is broken (state/break-shard-$SPOTSTEP_SHARD)"
    exit 4
fi
sleep "$seconds"

# A moving average crossover over a deterministic price series (an LCG from the seed).
n=240
x=$seed
p=()
for ((i = 0; i < n; i++)); do
    x=$(((x * 1103515245 + 12345) % 2147483648))
    p[i]=$((1000 + i / 2 + x % 97 - 48))
done
pos=0
entry=0
pnl=0
trades=0
for ((i = slow; i < n; i++)); do
    fs=0
    ss=0
    for ((j = i - fast; j < i; j++)); do fs=$((fs + p[j])); done
    for ((j = i - slow; j < i; j++)); do ss=$((ss + p[j])); done
    if ((fs * slow > ss * fast && pos == 0)); then
        pos=1
        entry=${p[i]}
        trades=$((trades + 1))
    elif ((fs * slow < ss * fast && pos == 1)); then
        pos=0
        pnl=$((pnl + p[i] - entry))
    fi
done
if ((pos == 1)); then
    pnl=$((pnl + p[n - 1] - entry))
fi
printf '{"id":%d,"fast":%d,"slow":%d,"seed":%d,"pnl":%d,"trades":%d}\n' \
    "$id" "$fast" "$slow" "$seed" "$pnl" "$trades" > "$SPOTSTEP_SHARD_RESULT"
echo "sweep: shard $SPOTSTEP_SHARD: pnl=$pnl trades=$trades"
