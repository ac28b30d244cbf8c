# big-output (workload): 1,500 lines of 30 bytes each (45,000 in all), more
# than SSM returns inline. The last line is fixed so a test can check it
# arrived.
echo "big-output ran" >> "$SPOTSTEP_WORKDIR/state/ran.log"

for ((i = 1; i <= 1500; i++)); do
    printf 'big-output: line %04d of 1500\n' "$i"
done
echo "big-output: last line"
