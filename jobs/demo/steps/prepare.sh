# prepare (setup): create the state folder, leave a marker, show the environment.
state="$SPOTSTEP_WORKDIR/state"
mkdir -p "$state"
printf 'prepared run=%s date=%s at=%s\n' "$SPOTSTEP_RUN_ID" "$SPOTSTEP_RUN_DATE" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$state/prepared"
echo "prepare: marker written to $state/prepared"

echo "prepare: environment received:"
for var in HOME XDG_CACHE_HOME AWS_REGION AWS_DEFAULT_REGION PYTHON_BIN DEMO_GREETING \
    SPOTSTEP_JOB SPOTSTEP_RUN_ID SPOTSTEP_STEP SPOTSTEP_MODE SPOTSTEP_PREFLIGHT \
    SPOTSTEP_PREFLIGHT_FLAG SPOTSTEP_BRANCH SPOTSTEP_BUCKET SPOTSTEP_STAGING \
    SPOTSTEP_MAX_RUNTIME SPOTSTEP_RUN_DATE SPOTSTEP_WORKDIR; do
    if [ -n "${!var+set}" ]; then
        printf '  %s=[%s]\n' "$var" "${!var}"
    else
        printf '  %s is not set\n' "$var"
    fi
done
echo "prepare: done"
