# shout (workload): 1,000 lines of 40 characters (40,000 in all), then a known last line,
# then exit 1.
mkdir -p "$SPOTSTEP_WORKDIR/state"
echo "shout ran" >> "$SPOTSTEP_WORKDIR/state/ran.log"

for ((i = 1; i <= 1000; i++)); do
    printf 'shout: line %04d of 1000 ..............\n' "$i"
done
echo "shout: THE REAL LAST LINE (exit 1 follows)"
exit 1
