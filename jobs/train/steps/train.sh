# train (workload): TRAIN_EPOCHS epochs of TRAIN_ITERATIONS iterations, each a fixed integer
# update of the weights (TRAIN_ITERATION_SECONDS of work). It saves a checkpoint at the end
# of every epoch and when stopped (SIGTERM: spotstep's runner at the spot notice), and
# resumes from the newest one: the final weights are the same with or without a reclaim.
epochs="${TRAIN_EPOCHS:?}"
iterations="${TRAIN_ITERATIONS:?}"
pause="${TRAIN_ITERATION_SECONDS:?}"
ckpt="${SPOTSTEP_CHECKPOINT_DIR:?the train step needs [steps.checkpoint]}"

# One checkpoint file, replaced atomically: ckpt-<epoch>-<iteration>.state holds
# "epoch iteration weights" (the next iteration to run, the weights so far).
save() {
    local name
    name="$(printf 'ckpt-%04d-%04d.state' "$1" "$2")"
    printf '%s %s %s\n' "$1" "$2" "$3" > "$ckpt/.$name.tmp"
    mv "$ckpt/.$name.tmp" "$ckpt/$name"
    find "$ckpt" -name 'ckpt-*.state' ! -name "$name" -delete
}

# A stop switch for the operator (and the tests): a number in state/fail-at-epoch fails the
# step when it reaches that epoch; remove the file, then redrive to resume.
fail_at="$(cat "$SPOTSTEP_WORKDIR/state/fail-at-epoch" 2>/dev/null || true)"

epoch=0 iteration=0 weights=1
if [ "${SPOTSTEP_RESUMED:-0}" = 1 ]; then
    newest="$(find "$ckpt" -name 'ckpt-*.state' | sort | tail -n 1)"
    if [ -z "$newest" ]; then
        echo "train: resumed, but no checkpoint file in $ckpt"
        exit 1
    fi
    read -r epoch iteration weights < "$newest"
    echo "train: resumed at epoch $epoch iteration $iteration (weights $weights)"
else
    echo "train: starting from scratch"
fi

stop=""
trap 'stop=1' TERM
while [ "$epoch" -lt "$epochs" ]; do
    if [ "$epoch" = "$fail_at" ]; then
        echo "train: told to fail at epoch $epoch (state/fail-at-epoch)"
        exit 3
    fi
    while [ "$iteration" -lt "$iterations" ]; do
        weights=$(( (weights * 1103515245 + 12345 + epoch * 7919 + iteration) % 2147483648 ))
        iteration=$((iteration + 1))
        echo "train: progress $((epoch * iterations + iteration))"
        if [ "$pause" != 0 ]; then
            sleep "$pause" &
            wait $! || true
        fi
        if [ -n "$stop" ]; then
            save "$epoch" "$iteration" "$weights"
            echo "train: stopped at epoch $epoch iteration $iteration; checkpoint saved"
            exit 143
        fi
    done
    epoch=$((epoch + 1)) iteration=0
    save "$epoch" 0 "$weights"
    echo "train: epoch $epoch/$epochs done (weights $weights)"
done
echo "train: result $weights"
