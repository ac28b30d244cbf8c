# prepare (setup): the training data, on every fresh instance (a relaunch gets it again).
mkdir -p "$SPOTSTEP_WORKDIR/data"
seq 1 "${TRAIN_ITERATIONS:?}" > "$SPOTSTEP_WORKDIR/data/batches.txt"
echo "prepare: $(wc -l < "$SPOTSTEP_WORKDIR/data/batches.txt") batches per epoch"
