# prepare (setup): the state folder every step of this job uses, once per instance.
mkdir -p "$SPOTSTEP_WORKDIR/state"
echo "prepare: instance ready for $SPOTSTEP_JOB run $SPOTSTEP_RUN_ID"
